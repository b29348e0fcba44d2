"""`asr export`: a model -> a folder for the torch-free runtime (ONNX encoder, features, tokenizer, decoder files)."""

from __future__ import annotations


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export a model for the torch-free runtime (ONNX + plain files)",
                       description="Write a model as a folder that the torch-free runtime (asr.runtime, the asr-lite "
                                   "command, or `asr transcribe --model FOLDER`) loads: the encoder as ONNX with "
                                   "dynamic batch and time axes, the mel filter bank and normalisation statistics, "
                                   "the tokenizer, the decoder settings with copies of their LM and lexicon, the "
                                   "calibration, described by model.json. Every export is checked against PyTorch "
                                   "on a padded batch before it is written. See docs/runtime.md.")
    p.add_argument("--model", help="bundled model name, checkpoint, or folder with model.pt (default: the default "
                   "model)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new, empty, or an earlier export "
                   "with --overwrite)")
    p.add_argument("--int8", action="store_true",
                   help="quantise the encoder's weights to int8 (onnxruntime dynamic quantisation): a quarter of "
                        "the size; see docs/runtime.md for its speed and accuracy")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    p.set_defaults(func=_export)


def _export(args) -> int:
    from pathlib import Path

    from asr.export import export

    description = export(args.model, args.out, int8=args.int8, overwrite=args.overwrite)
    size = sum(f.stat().st_size for f in Path(args.out).iterdir() if f.is_file()) / 1e6
    encoder = description["encoder"]
    print(f"{args.out}: {encoder['precision']} encoder, {size:.1f} MB in all; ONNX and PyTorch log-probs differ by "
          f"at most {encoder['max_abs_difference_from_pytorch']:.1e} (fp32, padded batch)")
    return 0
