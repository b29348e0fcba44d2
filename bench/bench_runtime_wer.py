"""What the exported model costs in accuracy: dev WER of the PyTorch path, the fp32 export and the int8 export.

    python bench/bench_runtime_wer.py --manifest DEV.jsonl [--manifest ...] [--model english] [--threads 2]
        [--workdir DIR]

The checkpoint is exported twice (`asr export`, fp32 and --int8) into --workdir; every utterance of each
manifest is transcribed whole-path (`transcribe(audio)`, as `asr transcribe` runs a file) by the PyTorch
checkpoint in fp32, the fp32 runtime and the int8 runtime, greedy and with the model's stored decoder
(beam search with its LM), and scored against the reference. The issue's bar: int8 within 0.3 WER points
of fp32 on every dev set, both decoders.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", action="append", required=True, help="a dev manifest (repeatable)")
    p.add_argument("--model", default="english")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", help="where the exports go (default: a temporary folder)")
    args = p.parse_args()

    import torch

    from asr.audio import load_audio
    from asr.catalog import resolve
    from asr.data import read_manifest
    from asr.export import export
    from asr.metrics import score
    from asr.runtime import load
    from asr.transcribe import Transcriber

    torch.set_num_threads(args.threads)
    checkpoint = resolve(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        folders = {"fp32": work / "export-fp32", "int8": work / "export-int8"}
        for name, folder in folders.items():
            export(checkpoint, folder, int8=name == "int8", overwrite=True)
        sets = {}
        for manifest in args.manifest:
            utts, _ = read_manifest(manifest)
            sets[Path(manifest).stem] = ([u.text for u in utts], [load_audio(u.audio) for u in utts])
        print(f"model {args.model}; WER (word errors / reference words), {args.threads} threads\n")
        print("| dev set | decoder | PyTorch fp32 | runtime fp32 | runtime int8 | int8 - fp32 (points) |")
        print("|---|---|---|---|---|---|")
        for decoder in ("greedy", "stored"):
            overrides = {"decoder": "greedy"} if decoder == "greedy" else {}
            engines = {"PyTorch fp32": Transcriber.load(checkpoint, precision="fp32", decoder=overrides),
                       "runtime fp32": load(folders["fp32"], threads=args.threads, **overrides),
                       "runtime int8": load(folders["int8"], threads=args.threads, **overrides)}
            name = engines["PyTorch fp32"].decoder_settings.get("decoder")
            for dev, (refs, audios) in sets.items():
                wers = {k: score(refs, [e.transcribe(a, 16000).text for a in audios]).wer for k, e in engines.items()}
                cost = 100 * (wers["runtime int8"] - wers["runtime fp32"])
                print(f"| {dev} | {name} | " + " | ".join(f"{w:.2%}" for w in wers.values()) + f" | {cost:+.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
