"""How far the encoder is from what this CPU allows: its FLOPs against the machine's fp32 matmul speed.

    python bench/bench_floor.py [--presets small] [--threads 2] [--repeats 5] [--seconds 30]

1. Forward FLOPs per audio second (101 input frames, 26 output frames) of every preset in
   asr.model.PRESETS, counted from the layer shapes (FLOPs = 2 x multiply-adds), the parts other than
   the LSTM cross-checked against torch's FlopCounterMode, and the LSTM against its count for the same
   stack as one packed nn.LSTM (the counter cannot see inside oneDNN's fused LSTM, which the model uses).
   Left out as negligible (each about 1 % of the total or less): biases, ReLU, time masking, LayerNorm
   (~5H per frame), the LSTM gate nonlinearities and cell updates, log-softmax.
2. The fp32 matmul speed of this machine: torch.mm of square matrices (--sizes), GFLOP/s; the size
   with the highest median gives "the matmul figure" used below.
3. Hence the "encoder floor" real-time factor of each preset: FLOPs per audio second / matmul FLOP/s,
   what the forward would cost if every FLOP ran at matmul speed.
4. For each of --presets (default: `small`, the bundled model's): the achieved GFLOP/s of the LSTM
   stack inside the real Model.forward (eval, inference_mode; timed by hooks on Model.lstm) at batch
   1 and 16 on --seconds of random features per utterance, as a fraction of the matmul figure, and the
   real-time factor of the whole forward.

Every timed figure is the median (min-max) over --repeats runs, after one warm-up; output is Markdown.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time

import torch
from bench_inference import spread, timings  # bench/ is on sys.path when run as a script
from torch.nn.utils.rnn import pack_padded_sequence

from asr.model import PRESETS, Model, count_parameters, output_lengths, preset_config

VOCAB, N_MELS = 29, 80
FRAMES_PER_SECOND = 101  # 1 s of audio = 1 + 16000 // 160 frames (FeatureExtractor.log_mel)
NON_LSTM = ("conv1", "conv2", "proj", "out")


def analytic_flops(config, frames: int) -> dict[str, int]:
    """Forward FLOPs of one utterance of `frames` input frames, per layer (2 FLOPs per multiply-add)."""
    c, h, f, v = config.conv_channels, config.hidden_size, config.n_mels, config.vocab_size
    t1, f1 = (frames + 1) // 2, (f + 1) // 2  # after conv1 (stride 2, kernel 3, padding 1)
    t2, f2 = int(output_lengths(torch.tensor(frames))), (f1 + 1) // 2  # after conv2
    # Per layer, direction and output frame: 4 gates x H outputs x (input + recurrent) inputs.
    lstm = sum(2 * 2 * t2 * 4 * h * ((h if i == 0 else 2 * h) + h) for i in range(config.num_layers))
    return {"conv1": 2 * t1 * f1 * c * 1 * 9, "conv2": 2 * t2 * f2 * c * c * 9, "proj": 2 * t2 * c * f2 * h,
            "lstm": lstm, "out": 2 * t2 * 2 * h * v}


def counted_flops(model: Model, frames: int) -> dict[str, int]:
    """FlopCounterMode's count per top-level module for one utterance (inference_mode, as timed below)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.randn(1, frames, model.config.n_mels), torch.tensor([frames]))
    counts = counter.get_flop_counts()
    result = {name: sum(counts.get(f"Model.{name}", {}).values()) for name in NON_LSTM}
    # The model's LSTMs run in oneDNN's fused kernel, which the counter does not see. The same stack as one
    # packed nn.LSTM runs as matrix products it does see, so that is what is counted.
    c, t2 = model.config, int(output_lengths(torch.tensor(frames)))
    reference = torch.nn.LSTM(c.hidden_size, c.hidden_size, c.num_layers, bidirectional=True, batch_first=True)
    packed = pack_padded_sequence(torch.randn(1, t2, c.hidden_size), torch.tensor([t2]), batch_first=True)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        reference(packed)
    result["lstm"] = counter.get_total_flops()
    return result


def repeat(fn, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls, after one warm-up call."""
    fn()
    return timings(fn, repeats)[0]


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_gflops(sizes: list[int], repeats: int) -> dict[int, list[float]]:
    """fp32 GFLOP/s of torch.mm on n x n matrices, one value per run, for each n."""
    result = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        result[n] = [2 * n**3 / s / 1e9 for s in repeat(lambda a=a, b=b: torch.mm(a, b), repeats)]
    return result


def achieved(name: str, batch: int, seconds: float, repeats: int) -> tuple[list[float], list[float], int, int]:
    """(LSTM seconds, whole-forward seconds) per run, and the LSTM's and the whole forward's FLOPs."""
    torch.manual_seed(0)
    model = Model(preset_config(name, VOCAB, N_MELS)).eval()
    frames = 1 + round(seconds * 100)
    feats, lengths = torch.randn(batch, frames, N_MELS), torch.full((batch,), frames)
    lstm_times, start = [], []
    model.lstm.register_forward_pre_hook(lambda *_: start.append(time.perf_counter()))
    model.lstm.register_forward_hook(lambda *_: lstm_times.append(time.perf_counter() - start[-1]))
    with torch.inference_mode():
        forward_times = repeat(lambda: model(feats, lengths), repeats)
    flops = analytic_flops(model.config, frames)
    return lstm_times[1:], forward_times, batch * flops["lstm"], batch * sum(flops.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["small"], choices=list(PRESETS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=30.0, help="audio per utterance in the achieved-speed runs")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048], help="matmul sizes")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, "
          f"median (min-max) of {args.repeats} runs\n")

    mm = matmul_gflops(args.sizes, args.repeats)
    print("| torch.mm n x n | GFLOP/s |\n|---|---|")
    for n, values in mm.items():
        print(f"| {n} | {spread(values, '.1f')} |")
    best = max(mm, key=lambda n: statistics.median(mm[n]))
    peak = statistics.median(mm[best])
    print(f"\nMatmul figure used below: n = {best}, {peak:.1f} GFLOP/s (median).\n")

    print("| preset | parameters | conv+proj+out GFLOP/s-audio: analytic / FlopCounterMode "
          "| LSTM: analytic / FlopCounterMode | total | floor RTF |")
    print("|---|---|---|---|---|---|")
    for name in PRESETS:
        config = preset_config(name, VOCAB, N_MELS)
        ours = analytic_flops(config, FRAMES_PER_SECOND)
        counted = counted_flops(Model(config).eval(), FRAMES_PER_SECOND)
        rest, rest_counted = sum(ours[k] for k in NON_LSTM), sum(counted[k] for k in NON_LSTM)
        total = sum(ours.values())
        floor = spread([total / (g * 1e9) for g in mm[best]], ".5f")
        print(f"| {name} | {count_parameters(config) / 1e6:.2f} M | {rest / 1e9:.4f} / {rest_counted / 1e9:.4f} "
              f"| {ours['lstm'] / 1e9:.4f} / {counted['lstm'] / 1e9:.4f} | {total / 1e9:.4f} | {floor} |")

    print(f"\nReal Model.forward, random features, {args.seconds:g} s per utterance:\n")
    print("| preset | batch | LSTM stack GFLOP/s | of matmul | whole forward GFLOP/s | whole forward RTF |")
    print("|---|---|---|---|---|---|")
    for name in args.presets:
        for batch in args.batches:
            lstm_s, forward_s, lstm_flops, flops = achieved(name, batch, args.seconds, args.repeats)
            lstm_rate = [lstm_flops / s / 1e9 for s in lstm_s]
            print(f"| {name} | {batch} | {spread(lstm_rate, '.1f')} "
                  f"| {spread([100 * r / peak for r in lstm_rate], '.0f')} % "
                  f"| {spread([flops / s / 1e9 for s in forward_s], '.1f')} "
                  f"| {spread([s / (batch * args.seconds) for s in forward_s], '.5f')} |")


if __name__ == "__main__":
    main()
