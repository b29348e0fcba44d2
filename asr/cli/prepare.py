"""`asr prepare` (corpora into manifests) and `asr doctor` (checking them before training)."""

from __future__ import annotations

from pathlib import Path

from asr.errors import InputError


def _add_dev_split(parser, by: str, dev_out: bool = False) -> None:
    """--dev-fraction/--seed (and --dev-out for single-manifest corpora): the same speaker-held-out split everywhere."""
    parser.add_argument("--dev-fraction", type=float, default=0.0, metavar="F",
                        help=f"share of utterances held out as a dev set, {by} (default: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing dev speakers")
    if dev_out:
        parser.add_argument("--dev-out", metavar="MANIFEST", help="dev manifest to write (default: <out>-dev.jsonl)")


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
    _add_dev_split(an4, "by speaker, the same share of female and male ones")
    an4.set_defaults(func=_prepare_an4)
    ls = corpora.add_parser("librispeech", help="LibriSpeech subsets found under --root",
                            description="Write OUT/<subset>.jsonl for every subset found under ROOT "
                                        "(e.g. ROOT/LibriSpeech/train-clean-100), audio as .flac or any other "
                                        "audio extension. With --dev-fraction, whole readers (the same share "
                                        "of female and male ones, from SPEAKERS.TXT) go to OUT/<subset>-dev.jsonl.")
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
    _add_dev_split(ls, "by reader, within each subset")
    ls.set_defaults(func=_prepare_librispeech)
    kaldi = corpora.add_parser("kaldi", help="a Kaldi data directory (wav.scp, text, utt2spk; segments optional)",
                               description="Write one manifest from a Kaldi data directory, the format of Kaldi, "
                                           "ESPnet and lhotse: wav.scp (recording id and audio path; piped "
                                           "commands and archive offsets are refused), text, utt2spk, and "
                                           "optionally segments (utterances cut from recordings, written once as "
                                           "FLAC beside the manifest) and spk2gender (balances the dev split).")
    kaldi.add_argument("--data-dir", required=True, metavar="DIR", help="the data directory (holding wav.scp)")
    kaldi.add_argument("--out", required=True, metavar="MANIFEST", help="manifest file to write (.jsonl)")
    kaldi.add_argument("--root", metavar="DIR",
                       help="folder that relative wav.scp paths start from (default: the current folder, as in "
                            "a Kaldi recipe)")
    _add_dev_split(kaldi, "by speaker (utt2spk), balanced by spk2gender when present", dev_out=True)
    kaldi.set_defaults(func=_prepare_kaldi)
    folder = corpora.add_parser("folder", help="your own audio files, each with a <name>.txt transcript beside it",
                                description="Write one manifest of every audio file (any format, any folder "
                                            "depth) under ROOT that has a same-name .txt transcript beside it "
                                            "(UTF-8). The id is the path below ROOT without its extension "
                                            "(anna/001 for ROOT/anna/001.wav). Audio without a transcript, with "
                                            "an empty one, or that cannot be read is skipped and reported.")
    folder.add_argument("--root", required=True, help="folder searched recursively for audio files")
    folder.add_argument("--out", required=True, metavar="MANIFEST", help="manifest file to write (.jsonl)")
    speaker = folder.add_mutually_exclusive_group()
    speaker.add_argument("--speaker-from", choices=["dir"],
                         help="dir: the speaker is the name of the folder holding each file (default: no speaker)")
    speaker.add_argument("--speaker-regex", metavar="REGEX",
                         help="the speaker is this regular expression's first group (else its whole match) "
                              "searched in the id, e.g. '^([a-z]+)_' for anna_001.wav")
    _add_dev_split(folder, "by speaker when speakers are known, else by file", dev_out=True)
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
    _add_dev_split(table, "by speaker when a speaker column is found, else by file", dev_out=True)
    table.set_defaults(func=_prepare_table)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _summary(path: Path, utts) -> str:
    speakers = {u.speaker for u in utts if u.speaker is not None}
    hours = sum(u.duration for u in utts) / 3600
    length = f"{hours:.2f} h" if hours >= 1 else f"{hours * 60:.1f} min"
    return f"{path}: {_plural(len(utts), 'utterance')}, " + (f"{_plural(len(speakers), 'speaker')}, " if speakers
                                                            else "") + length


def _split(utts, args, genders: dict[str, str] | None = None):
    """-> (rest, dev): whole speakers (else files) held out, the same share of each gender where genders are known."""
    from asr.corpora import split_by_speaker

    if not 0 <= args.dev_fraction < 1:
        raise InputError(f"--dev-fraction must be at least 0 and below 1, got {args.dev_fraction}")
    if args.dev_fraction == 0:
        return utts, []
    group = (lambda speaker: genders.get(speaker, "?")) if genders else None
    rest, dev = split_by_speaker(utts, args.dev_fraction, args.seed, group=group)
    if not rest or not dev:
        raise InputError(f"--dev-fraction {args.dev_fraction}: {len({u.speaker or u.id for u in utts})} speakers "
                         "(or files) cannot be split into a non-empty training and dev set")
    return rest, dev


def _write(out: Path, utts, args, genders: dict[str, str] | None = None, note: str = "") -> None:
    """The manifest at `out`, and with --dev-fraction its dev part at --dev-out (default <out>-dev.jsonl)."""
    from asr.data import write_manifest

    rest, dev = _split(utts, args, genders)
    write_manifest(out, rest)
    print(_summary(out, rest) + note)
    if dev:
        dev_out = Path(getattr(args, "dev_out", None) or out.with_name(out.stem + "-dev" + (out.suffix or ".jsonl")))
        write_manifest(dev_out, dev)
        print(_summary(dev_out, dev) + " (dev: speakers not in " + out.name + ")")


def _manifest_out(args) -> Path:
    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; --out names the manifest file to write, e.g. {out / 'train.jsonl'}")
    return out


def _prepare_an4(args) -> int:
    from asr.corpora import scan_an4
    from asr.data import write_manifest

    halves = scan_an4(args.root)
    out = Path(args.out or args.root)
    if "train" in halves:
        # AN4 speaker ids start with the speaker's sex (f/m): hold out the same share of each.
        halves["train"], dev = _split(halves["train"], args, genders={u.speaker: u.speaker[0] for u in halves["train"]})
        if dev:
            halves["dev"] = dev
    for half, utts in halves.items():
        write_manifest(out / f"an4-{half}.jsonl", utts)
        print(_summary(out / f"an4-{half}.jsonl", utts))
    return 0


def _prepare_librispeech(args) -> int:
    from asr.corpora import librispeech_genders, scan_librispeech

    if args.download:
        from asr.download import fetch_librispeech, resource

        for path in fetch_librispeech(args.root, args.download, args.mirror, keep_archives=args.keep_archives):
            print(f"{path}: ready")
        if not any(resource(n).is_archive for n in args.download) and not any(Path(args.root).rglob("*.trans.txt")):
            return 0  # only LM files were asked for, and there is no corpus to scan yet
    out = Path(args.out or args.root)
    genders = librispeech_genders(args.root)
    for subset, utts in sorted(scan_librispeech(args.root, cache_dir=out).items()):
        _write(out / f"{subset}.jsonl", utts, args, genders)
    return 0


def _prepare_kaldi(args) -> int:
    from asr.kaldi import scan_kaldi

    out = _manifest_out(args)
    utts, genders, problems = scan_kaldi(args.data_dir, args.root,
                                         segments_dir=out.with_name(out.stem + "-segments"))
    _report(problems)
    _write(out, utts, args, genders, f", {_plural(len(problems), 'utterance')} skipped" if problems else "")
    return 0


def _report(problems: list[str], shown: int = 10) -> None:
    import logging

    for line in problems[:shown]:
        logging.getLogger("asr.prepare").warning("%s", line)
    if len(problems) > shown:
        logging.getLogger("asr.prepare").warning("... and %d more", len(problems) - shown)


def _prepare_folder(args) -> int:
    from asr.corpora import scan_folder, speakers_by_regex

    out = _manifest_out(args)
    utts, skipped = scan_folder(args.root, args.speaker_from)
    if args.speaker_regex:
        utts = speakers_by_regex(utts, args.speaker_regex)
    n_skipped = sum(len(files) for files in skipped.values())
    _write(out, utts, args, note=f", {n_skipped} audio files skipped (see the warnings above)" if n_skipped else "")
    return 0


def _prepare_table(args) -> int:
    from asr.corpora import read_table

    out = _manifest_out(args)
    if out.resolve() == Path(args.file).resolve():
        raise InputError(f"{out}: is the table being read; write the manifest elsewhere with --out")
    utts, problems = read_table(args.file, args.audio_column, args.text_column, args.root,
                                speaker_column=args.speaker_column, id_column=args.id_column)
    _write(out, utts, args, note=f", {_plural(len(problems), 'row')} skipped (see the warnings above)"
           if problems else "")
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
    p.add_argument("--workers", "--threads", type=int, metavar="N", help="processes reading audio, the CPU cores the "
                   "check uses (default: every core this process may use, by os.sched_getaffinity, at most 16)")
    p.add_argument("--clean", metavar="OUT.jsonl", help="write a manifest without the utterances that have "
                                                        "blocking problems (warnings are kept)")
    p.add_argument("--json", metavar="REPORT.json", help="write the full report as JSON")
    p.set_defaults(func=_doctor)


def _doctor(args) -> int:
    from asr.doctor import run_doctor

    return run_doctor(args.manifests, tokenizer=args.tokenizer, model=args.model, workers=args.workers,
                      clean=args.clean, json_path=args.json)
