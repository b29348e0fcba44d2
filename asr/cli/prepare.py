"""`asr prepare` (corpora into manifests) and `asr doctor` (checking them before training)."""

from __future__ import annotations

from pathlib import Path

from asr.errors import InputError


def add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="scan a corpus into JSONL manifests",
                       description="Scan a corpus layout on disk into JSONL manifests.")
    corpora = p.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    an4 = corpora.add_parser("an4", help="CMU AN4 (official layout: etc/, wav/an4_clstk, wav/an4test_clstk)",
                             description="Write OUT/an4-train.jsonl, and OUT/an4-test.jsonl when the test half "
                                         "is present. With --dev-fraction, whole speakers (the same share of "
                                         "female and male ones) are moved from the training half to "
                                         "OUT/an4-dev.jsonl.")
    an4.add_argument("--root", required=True, help="folder holding etc/ and wav/")
    an4.add_argument("--out", help="folder for the manifests (default: the --root folder)")
    an4.add_argument("--dev-fraction", type=float, default=0.0,
                     help="share of training utterances held out as a dev set, by speaker (default: none)")
    an4.add_argument("--seed", type=int, default=0, help="seed for choosing dev speakers")
    an4.set_defaults(func=_prepare_an4)
    ls = corpora.add_parser("librispeech", help="LibriSpeech subsets found under --root",
                            description="Write OUT/<subset>.jsonl for every subset found under ROOT "
                                        "(e.g. ROOT/LibriSpeech/train-clean-100).")
    ls.add_argument("--root", required=True, help="folder holding LibriSpeech/<subset>/ or the subsets")
    ls.add_argument("--out", help="folder for the manifests (default: the --root folder)")
    ls.add_argument("--download", nargs="+", metavar="NAME",
                    help="first download these from OpenSLR into ROOT (resumable, MD5-checked): subsets "
                         "(dev-clean, train-clean-100, ...), extracted to ROOT/LibriSpeech/<subset>, and LM files "
                         "(3-gram.pruned.1e-7.arpa.gz, librispeech-lexicon.txt, ...), kept as ROOT/<file>")
    ls.add_argument("--mirror", metavar="URL",
                    help="OpenSLR mirror's resources folder, e.g. https://openslr.elda.org/resources "
                         "(default: $ASR_LIBRISPEECH_MIRROR or https://www.openslr.org/resources)")
    ls.add_argument("--keep-archives", action="store_true",
                    help="keep the downloaded .tar.gz files after extracting them (default: delete)")
    ls.set_defaults(func=_prepare_librispeech)
    folder = corpora.add_parser("folder", help="your own audio files, each with a <name>.txt transcript beside it",
                                description="Write one manifest of every audio file (any format, any folder "
                                            "depth) under ROOT that has a same-name .txt transcript beside it "
                                            "(UTF-8). The id is the path below ROOT without its extension "
                                            "(anna/001 for ROOT/anna/001.wav). Audio without a transcript, with "
                                            "an empty one, or that cannot be read is skipped and reported.")
    folder.add_argument("--root", required=True, help="folder searched recursively for audio files")
    folder.add_argument("--out", required=True, metavar="MANIFEST", help="manifest file to write (.jsonl)")
    folder.add_argument("--speaker-from", choices=["dir"],
                        help="dir: the speaker is the name of the folder holding each file (default: no speaker)")
    folder.set_defaults(func=_prepare_folder)
    table = corpora.add_parser("table", help="a CSV, TSV or JSON Lines table of audio paths and transcripts",
                               description="Write one manifest from a table with a header (CSV, TSV) or JSON "
                                           "Lines (NeMo manifests too). Columns are found by their usual names "
                                           "unless named: audio (path, audio, file, filename, audio_filepath, "
                                           "wav, ...), text (text, transcript, sentence, transcription, ...); "
                                           "speaker, id and duration columns are used when present. Rows that "
                                           "cannot be used are skipped and reported with their line numbers.")
    table.add_argument("file", metavar="FILE", help="the table (.csv, .tsv, .jsonl; other names are sniffed)")
    table.add_argument("--out", required=True, metavar="MANIFEST", help="manifest file to write (.jsonl)")
    table.add_argument("--audio-column", metavar="NAME", help="column holding the audio paths")
    table.add_argument("--text-column", metavar="NAME", help="column holding the transcripts")
    table.add_argument("--speaker-column", metavar="NAME", help="column holding speaker names (optional)")
    table.add_argument("--id-column", metavar="NAME",
                       help="column holding utterance ids (default: the audio path without its extension)")
    table.add_argument("--root", metavar="DIR",
                       help="folder that relative audio paths start from (default: the table's folder; "
                            "for Common Voice, its clips/ folder)")
    table.set_defaults(func=_prepare_table)


def _prepare_an4(args) -> int:
    from asr.corpora import scan_an4, split_by_speaker
    from asr.data import write_manifest

    halves = scan_an4(args.root)
    out = Path(args.out or args.root)
    if "train" in halves and args.dev_fraction > 0:
        # AN4 speaker ids start with the speaker's sex (f/m): hold out the same share of each.
        halves["train"], halves["dev"] = split_by_speaker(halves["train"], args.dev_fraction, args.seed,
                                                          group=lambda speaker: speaker[0])
    for half, utts in halves.items():
        write_manifest(out / f"an4-{half}.jsonl", utts)
        speakers = len({u.speaker for u in utts})
        print(f"{out / f'an4-{half}.jsonl'}: {len(utts)} utterances, {speakers} speakers, "
              f"{sum(u.duration for u in utts) / 60:.1f} min")
    return 0


def _prepare_librispeech(args) -> int:
    from asr.corpora import scan_librispeech
    from asr.data import write_manifest

    if args.download:
        from asr.download import fetch_librispeech, resource

        for path in fetch_librispeech(args.root, args.download, args.mirror, keep_archives=args.keep_archives):
            print(f"{path}: ready")
        if not any(resource(n).is_archive for n in args.download) and not any(Path(args.root).rglob("*.trans.txt")):
            return 0  # only LM files were asked for, and there is no corpus to scan yet
    out = Path(args.out or args.root)
    for subset, utts in sorted(scan_librispeech(args.root, cache_dir=out).items()):
        write_manifest(out / f"{subset}.jsonl", utts)
        print(f"{out / f'{subset}.jsonl'}: {len(utts)} utterances, {sum(u.duration for u in utts) / 3600:.2f} h")
    return 0


def _prepare_folder(args) -> int:
    from asr.corpora import scan_folder
    from asr.data import write_manifest

    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; --out names the manifest file to write, e.g. {out / 'train.jsonl'}")
    utts, skipped = scan_folder(args.root, args.speaker_from)
    write_manifest(out, utts)
    speakers = f"{len({u.speaker for u in utts})} speakers, " if args.speaker_from else ""
    n_skipped = sum(len(files) for files in skipped.values())
    print(f"{out}: {len(utts)} utterances, {speakers}{sum(u.duration for u in utts) / 60:.1f} min"
          + (f", {n_skipped} audio files skipped (see the warnings above)" if n_skipped else ""))
    return 0


def _prepare_table(args) -> int:
    from asr.corpora import read_table
    from asr.data import write_manifest

    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; --out names the manifest file to write, e.g. {out / 'train.jsonl'}")
    if out.resolve() == Path(args.file).resolve():
        raise InputError(f"{out}: is the table being read; write the manifest elsewhere with --out")
    utts, problems = read_table(args.file, args.audio_column, args.text_column, args.root,
                                speaker_column=args.speaker_column, id_column=args.id_column)
    write_manifest(out, utts)
    speakers = {u.speaker for u in utts if u.speaker is not None}
    print(f"{out}: {len(utts)} utterances, " + (f"{len(speakers)} speakers, " if speakers else "")
          + f"{sum(u.duration for u in utts) / 60:.1f} min"
          + (f", {len(problems)} rows skipped (see the warnings above)" if problems else ""))
    return 0


def add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="check manifests and their audio before training",
                       description="Read every utterance's audio once and report, grouped by problem: "
                                   "blocking ones (unusable manifest lines, unreadable or empty audio, empty "
                                   "transcripts, transcripts CTC cannot fit into the audio) and warnings "
                                   "(characters outside the vocabulary, wrong manifest durations, duration "
                                   "outliers, speech rate, near-silence, clipping, odd sample rates or channel "
                                   "counts). Exit code 0 when nothing blocks, 1 otherwise.")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="JSONL manifest(s), checked as one data set")
    vocab = p.add_mutually_exclusive_group()
    vocab.add_argument("--tokenizer", help="vocabulary to check against: char (default) or bpe:N")
    vocab.add_argument("--model", metavar="CKPT", help="check against this checkpoint's tokenizer instead")
    p.add_argument("--workers", type=int, help="processes reading audio (default: CPU cores, at most 16)")
    p.add_argument("--clean", metavar="OUT.jsonl", help="write a manifest without the utterances that have "
                                                        "blocking problems (warnings are kept)")
    p.add_argument("--json", metavar="REPORT.json", help="write the full report as JSON")
    p.set_defaults(func=_doctor)


def _doctor(args) -> int:
    from asr.doctor import run_doctor

    return run_doctor(args.manifests, tokenizer=args.tokenizer, model=args.model, workers=args.workers,
                      clean=args.clean, json_path=args.json)
