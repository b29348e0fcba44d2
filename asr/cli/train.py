"""`asr train` and `asr average`."""

from __future__ import annotations

import argparse


class _TrainHelp(argparse.Action):
    """--help for `asr train`, with each option's default and the preset table.

    Both come from `TrainConfig` and the presets, which import torch, so they are filled in only
    when help is asked for; every other use of `asr` starts without torch.
    """

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from asr.model import PRESETS, count_parameters, describe
        from asr.train import TrainConfig

        defaults = vars(TrainConfig(train=[], out=""))
        for action in parser._actions:
            if action.dest in defaults and action.nargs != 0 and defaults[action.dest] not in (None, [], ""):
                action.help = f"{action.help or ''} (default: {defaults[action.dest]})".lstrip()
        rows = [f"  {name:<6} {describe(c, with_preset=False) + ':':<27} {count_parameters(c) / 1e6:6.2f}M parameters"
                for name, c in PRESETS.items()]
        parser.epilog = "presets (character vocabulary):\n" + "\n".join(rows)
        parser.print_help()
        parser.exit()


def add_train(sub) -> None:
    # Options left out take TrainConfig's defaults (argparse.SUPPRESS keeps them out of the namespace).
    p = sub.add_parser("train", help="train a model on manifests", add_help=False,
                       argument_default=argparse.SUPPRESS, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train a BiLSTM-CTC model. Writes RUNDIR/last.pt (resumable), "
                                   "RUNDIR/best.pt (lowest dev WER; of tied epochs, the one with the lowest "
                                   "CER, then the later), metrics.jsonl, train.log and curves.png (loss, dev "
                                   "WER/CER and learning rate).")
    p.add_argument("-h", "--help", action=_TrainHelp, help="show this help (with defaults and preset sizes) and exit")
    p.add_argument("--train", nargs="+", required=True, metavar="MANIFEST", help="training manifest(s)")
    p.add_argument("--dev", metavar="MANIFEST", help="dev manifest: greedy WER after every epoch picks best.pt")
    p.add_argument("--out", required=True, metavar="RUNDIR", help="run folder for checkpoints and logs")
    p.add_argument("--preset", help="model size: tiny, small, medium, base, large")
    p.add_argument("--tokenizer", help="char or bpe:N (N sentencepiece pieces); default char, or --init's units. "
                                       "With --init and other units, the network below the output layer is kept "
                                       "and a new output layer learns the new units")
    p.add_argument("--feature-norm", choices=["global", "utterance"],
                   help="log-mel normalisation: the training data's per-bin mean and std (global), or each "
                        "utterance's own mean subtracted first (utterance); --init and --resume keep the checkpoint's")
    p.add_argument("--init", metavar="CKPT",
                   help="fine-tune: start from this checkpoint's weights, tokenizer and feature statistics "
                        "(network size from it, not --preset), with a fresh optimizer and schedule")
    p.add_argument("--dropout", type=float, help="dropout between layers (default: the preset's or --init's)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--warmup-steps", type=int,
                   help="linear warm-up, then cosine decay; at most 10 %% of the run's optimizer steps (at least 1), "
                        "so that a short run reaches the peak --lr too (the log says when it shortened it)")
    p.add_argument("--max-batch-seconds", type=float,
                   help="audio seconds per batch, padding included (batches are bucketed by duration)")
    p.add_argument("--grad-clip", type=float, help="maximum gradient norm")
    p.add_argument("--min-duration", type=float, help="drop shorter utterances (s)")
    p.add_argument("--max-duration", type=float, help="drop longer utterances (s)")
    p.add_argument("--no-spec-augment", dest="spec_augment", action="store_false", help="turn SpecAugment off")
    p.add_argument("--freq-masks", type=int, metavar="N", help="SpecAugment frequency masks (up to 27 bins each)")
    p.add_argument("--time-masks", type=int, metavar="N",
                   help="SpecAugment time masks (up to 5 %% of the utterance each)")
    p.add_argument("--speed-perturb", action="store_true", help="play each utterance at 0.9, 1.0 or 1.1 speed")
    p.add_argument("--noise-dir", metavar="DIR", help="mix in noise from the audio files in DIR (recursively)")
    p.add_argument("--noise-snr", type=_snr_range, metavar="LOW,HIGH", help="SNR range in dB for --noise-dir")
    p.add_argument("--noise-prob", type=float, metavar="P",
                   help="share of utterances --noise-dir mixes noise into; the rest stay clean")
    p.add_argument("--rir-dir", metavar="DIR",
                   help="play utterances in rooms: convolve them with room impulse responses from the audio files "
                        "in DIR (recursively), measured or simulated (recipes/an4/make_rirs.py)")
    p.add_argument("--rir-prob", type=float, metavar="P",
                   help="share of utterances --rir-dir plays in a room; the rest stay dry")
    p.add_argument("--augment-ramp", type=int, metavar="EPOCHS",
                   help="ease speed perturbation, rooms and noise in: over the first EPOCHS epochs the share of "
                        "utterances they touch rises linearly to all (SpecAugment is not ramped)")
    p.add_argument("--inter-ctc", dest="inter_ctc_weight", type=float, metavar="W",
                   help="intermediate CTC: weight W in [0, 1) of a second CTC loss on a middle LSTM layer's output "
                        "(through the same output layer; nothing is added to the model)")
    p.add_argument("--inter-ctc-layer", type=int, metavar="K",
                   help="the LSTM layer (from 1) intermediate CTC reads (default: the middle one, 2 of 3)")
    p.add_argument("--shuffle-first-epoch", dest="sorted_first_epoch", action="store_false",
                   help="shuffle the first epoch too (by default it runs shortest utterances first)")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int,
                   help="DataLoader worker processes, one CPU thread each (default: 1, or 0 on a single core)")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads; 0: the cores this process may use (os.sched_getaffinity), shared "
                        "among torchrun's processes, less the --workers, at least 1. More threads than free cores "
                        "make every step wait for the slowest: on a busy machine give fewer")
    p.add_argument("--device", help="auto (the first CUDA GPU if there is one, else the CPU), cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: bf16 autocast on CUDA, fp32 on CPU; fp16 adds a gradient scaler; CTC stays fp32")
    p.add_argument("--accumulate", type=int, help="batches whose gradients make one optimizer step")
    p.add_argument("--save-every", type=int, metavar="STEPS",
                   help="also checkpoint every STEPS optimizer steps: RUNDIR/last.pt and RUNDIR/step-N.pt")
    p.add_argument("--keep-last", type=int, metavar="K", help="how many step-N.pt checkpoints to keep")
    p.add_argument("--keep-epochs", type=int, metavar="K",
                   help="also save RUNDIR/epoch-N.pt at every epoch's end and keep the newest K (for asr average)")
    p.add_argument("--resume", action="store_true",
                   help="continue from RUNDIR/last.pt exactly where it stopped, mid-epoch included")
    p.set_defaults(func=_train)


def _snr_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in dB, e.g. 5,20; got {text!r}") from None
    if low > high:
        raise argparse.ArgumentTypeError(f"LOW must not exceed HIGH, got {text!r}")
    return low, high


def _train(args) -> int:
    from dataclasses import fields

    from asr import distributed
    from asr.train import TrainConfig, train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)})
    train(cfg)
    if distributed.under_torchrun():
        distributed.leave(0)
    return 0


def add_average(sub) -> None:
    p = sub.add_parser("average", help="average several checkpoints' weights into one, or join them in an ensemble",
                       usage="asr average CKPT CKPT [CKPT ...] --out OUT.pt [--half] [--ensemble]\n"
                             "       asr average --last K --run RUNDIR --out OUT.pt [--half] [--ensemble]",
                       description="Write one checkpoint whose weights are the element-wise mean of the inputs' "
                                   "(e.g. the last few epochs of a run), or with --ensemble one that keeps "
                                   "each input's weights and averages their outputs when decoding. The inputs "
                                   "must share the model config, tokenizer and feature settings; optimizer "
                                   "state is not kept.")
    p.add_argument("checkpoints", nargs="*", metavar="CKPT", help="checkpoints to average (at least 2)")
    p.add_argument("--last", type=int, metavar="K",
                   help="with --run: average the K checkpoints with the most training steps")
    p.add_argument("--run", metavar="RUNDIR", help="with --last: the run folder's step-*.pt and epoch-*.pt files")
    p.add_argument("--out", required=True, metavar="OUT.pt", help="checkpoint file to write")
    p.add_argument("--half", action="store_true",
                   help="store the weights in float16: half the file size; the model still computes in float32")
    p.add_argument("--ensemble", action="store_true",
                   help="keep every input's weights and decode with the mean of their output probabilities, "
                        "frame by frame: one forward pass per input. For runs fine-tuned from one checkpoint "
                        "(asr train --init), whose CTC spikes fall on the same frames; runs trained from "
                        "different starts put about a quarter of theirs on different frames, where the mean "
                        "loses letters (models/an4/MODEL.md), and are refused")
    p.set_defaults(func=_average, parser=p)


def _average(args) -> int:
    from asr.average import find_last_checkpoints, write_average

    if (args.last is None) != (args.run is None):
        args.parser.error("--last and --run go together")
    if args.last is not None:
        if args.checkpoints:
            args.parser.error("give either checkpoint files or --last K --run RUNDIR, not both")
        paths = find_last_checkpoints(args.run, args.last)
    else:
        if len(args.checkpoints) < 2:
            args.parser.error("give at least 2 checkpoints (or --last K --run RUNDIR)")
        paths = args.checkpoints
    import torch

    state = write_average(paths, args.out, torch.float16 if args.half else None, ensemble=args.ensemble)
    what = f"ensemble of {len(state['members'])} models" if args.ensemble else f"average of {len(paths)} checkpoints"
    print(f"{args.out}: {what}" + (", stored in float16" if args.half else ""))
    return 0
