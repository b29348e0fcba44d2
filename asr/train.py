"""Training as plain functions: prepare data, build the model, then one visible loop.

Dimensions: B batch, T frames, T' output frames, V vocabulary, L target tokens.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

import asr
from asr import distributed
from asr.atomic import atomic_write_text, make_dirs
from asr.audio import FeatureConfig, FeatureExtractor, NoiseMixer, Reverberator, SpecAugment, SpeedPerturb, load_audio
from asr.data import BucketBatchSampler, SpeechDataset, Utterance, collate, read_manifest
from asr.doctor import ctc_feasible
from asr.errors import InputError
from asr.evaluate import count_noun, decode_utterances, summarize
from asr.model import (
    Model,
    ModelConfig,
    available_cores,
    created_now,
    describe,
    preset_config,
    read_checkpoint,
    resolve_device,
    save_checkpoint,
    set_threads,
    single_model_weights,
)
from asr.monitor import MetricsLog, collapse_cause, collapse_warning, plot_curves, progress_postfix
from asr.monitor import progress as progress_bar
from asr.text import CharTokenizer, build_tokenizer, describe_unknown, tokenizer_from_dict

log = logging.getLogger(__name__)
EPOCH_SUMS = ("epoch_loss", "epoch_batches", "epoch_audio")  # in the checkpoint's progress, over all ranks
# Warm-up takes at most this share of a run's optimizer steps. The default 300 steps suit runs of thousands;
# 20 utterances make 2 steps an epoch, and in 30 epochs the rate never reached its peak (issue 30).
WARMUP_SHARE = 0.1


@dataclass
class TrainConfig:
    train: list[str]
    out: str
    dev: str | None = None
    preset: str = "small"
    init: str | None = None  # start from this checkpoint's weights, tokenizer and features (fine-tuning)
    dropout: float | None = None  # None: the preset's (or --init's)
    # "char" or "bpe:N"; None: characters, or --init's units. --init with other units than its own keeps the
    # network below the output layer and trains a new output layer for them (transfer_weights).
    tokenizer: str | None = None
    # "utterance": subtract each utterance's own per-bin mean before the training statistics; "global": the
    # statistics alone (FeatureConfig.normalize). On AN4 the former left CTC's blank plateau in half the
    # epochs and halved the WER on telephone-band and noisy audio (models/an4/MODEL.md).
    feature_norm: str = "utterance"
    epochs: int = 30
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 300  # at most WARMUP_SHARE of the run's steps (effective_warmup)
    final_lr_ratio: float = 0.02  # cosine decay ends at lr * this
    # Small batches: on AN4, 240 s batches left CTC on its all-blank plateau for 30 epochs, 40 s for 12.
    max_batch_seconds: float = 40.0
    grad_clip: float = 5.0
    min_duration: float = 0.1
    max_duration: float = 30.0
    spec_augment: bool = True
    freq_masks: int = 2  # SpecAugment frequency masks of up to 27 bins
    time_masks: int = 2  # SpecAugment time masks of up to 5 % of the utterance each
    speed_perturb: bool = False  # 0.9/1.0/1.1 speed, drawn per utterance
    noise_dir: str | None = None  # folder of noise files mixed in at a random SNR
    noise_snr: tuple[float, float] = (5.0, 20.0)  # dB
    noise_prob: float = 1.0  # share of utterances that get noise; the rest stay clean
    rir_dir: str | None = None  # folder of room impulse responses the speech is convolved with
    rir_prob: float = 1.0  # share of utterances played in a room; the rest stay dry
    augment_ramp: int = 0  # epochs over which speed perturbation, rooms and noise ease in (SpeechDataset)
    # Intermediate CTC (Lee & Watanabe, 2021): the loss is (1 - w) x CTC(last layer) + w x CTC(the output
    # layer applied to LSTM layer `inter_ctc_layer`, default the middle one). Training only: no parameter.
    inter_ctc_weight: float = 0.0
    inter_ctc_layer: int | None = None
    sorted_first_epoch: bool = True
    seed: int = 0
    workers: int | None = None  # DataLoader worker processes; None: 1, or 0 on a single core (cpu_plan)
    threads: int = 0  # torch CPU threads; 0: the cores available less the workers (cpu_plan)
    device: str = "auto"
    resume: bool = False
    stats_utterances: int = 500
    log_every: int = 50
    max_bad_batches: int = 20  # consecutive non-finite losses before the run stops
    dev_examples: int = 3
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16 (with a gradient scaler)
    accumulate: int = 1  # batches whose gradients are summed into one optimizer step
    save_every: int = 0  # optimizer steps between mid-epoch checkpoints (0: at epoch ends only)
    keep_last: int = 3  # step-N.pt checkpoints kept for averaging
    keep_epochs: int = 0  # epoch-N.pt checkpoints (end of epoch, weights only) kept for averaging
    extra_metadata: dict = field(default_factory=dict)


def load_utterances(paths: list[str], what: str) -> list[Utterance]:
    utts: list[Utterance] = []
    for p in paths:
        got, problems = read_manifest(p)
        for problem in problems[:10]:
            log.warning("skipping %s", problem)
        if len(problems) > 10:
            log.warning("... and %d more unusable lines in %s", len(problems) - 10, p)
        utts += got
    if not utts:
        raise InputError(f"no usable utterances in the {what} manifest(s): {', '.join(paths)}")
    return utts


def filter_trainable(utts: list[Utterance], tokenizer, cfg: TrainConfig) -> list[Utterance]:
    """Drop what CTC cannot learn from, and say how many and why."""
    kept, dropped = [], {"too short": 0, "too long": 0, "empty transcript": 0,
                         "transcript longer than the output frames": 0}
    for u in utts:
        if not u.text.strip():  # in a speech corpus, more often a lost transcript than a silent recording
            dropped["empty transcript"] += 1
            continue
        if u.duration < cfg.min_duration:
            dropped["too short"] += 1
            continue
        if u.duration > cfg.max_duration:
            dropped["too long"] += 1
            continue
        ids = tokenizer.encode(u.text)
        if not ctc_feasible(ids, 1 + int(u.duration * 100)):  # 10 ms frames; the rule `asr doctor` applies
            dropped["transcript longer than the output frames"] += 1
            continue
        kept.append(u)
    for reason, n in dropped.items():
        if n:
            log.warning("dropped %s: %s (limits %.2f-%.1f s)", count_noun(n, "training utterance"), reason,
                        cfg.min_duration, cfg.max_duration)
    if tokenizer.unknown:
        log.warning("training transcripts have %s", describe_unknown(tokenizer.unknown))
    if not kept:
        raise InputError("no training utterances left after filtering")
    return kept


def effective_warmup(warmup_steps: int, total_steps: int) -> int:
    """The warm-up steps a run of `total_steps` takes: `warmup_steps`, but at most WARMUP_SHARE of the run
    (at least 1 step), so that the learning rate reaches its peak and the cosine decay has the rest."""
    return max(0, min(warmup_steps, max(1, round(WARMUP_SHARE * total_steps))))


def cpu_plan(threads: int, workers: int | None, processes: int = 1) -> tuple[int, int]:
    """-> (torch threads, DataLoader workers) that together fit this process's share of the cores.

    `processes`: training processes on this machine (torchrun's LOCAL_WORLD_SIZE), which share the cores.
    A DataLoader worker computes with one thread (torch sets 1 in each worker), so the main process gets the
    cores less the workers. Given values are kept: `threads` 0 and `workers` None mean choose.
    """
    cores = max(1, available_cores() // max(1, processes))
    if workers is None:
        workers = 1 if cores > 1 else 0  # one worker keeps up with a CPU model's steps; on one core, none
    if workers < 0 or threads < 0:
        raise InputError(f"--workers and --threads must be 0 or more, got {workers} and {threads}")
    return threads or max(1, cores - workers), workers


def lr_factor(step: int, warmup: int, total: int, final_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `final_ratio` at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def ctc_loss(log_probs, out_lengths, targets, target_lengths) -> torch.Tensor:
    # CTC sums probabilities over many paths; in float16/bfloat16 that underflows, so always float32.
    return F.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lengths, target_lengths,
                      blank=0, reduction="mean", zero_infinity=True)


def _same_units(spec: str, saved: dict) -> bool:
    """Whether --tokenizer `spec` names the units a checkpoint's tokenizer (`saved`, its dict) already has.
    ``bpe:N`` is never the same as a saved BPE model: it asks for a new one trained on this run's text."""
    return spec == "char" and saved["kind"] == "char" and saved.get("alphabet") == CharTokenizer().to_dict()["alphabet"]


def transfer_weights(model: Model, weights: dict) -> list[str]:
    """Load `weights` into `model` except where the shapes differ (the output layer, for new units); -> the
    names left as initialised. Transfer learning across units, as ESPnet's --init_param with excluded keys."""
    own = model.state_dict()
    kept = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(kept, strict=False)
    return sorted(k for k in own if k not in kept)


def _inter_ctc_layer(cfg: TrainConfig, num_layers: int) -> int | None:
    """The LSTM layer (from 1) that intermediate CTC reads, or None when it is off."""
    if not 0.0 <= cfg.inter_ctc_weight < 1.0:
        raise InputError(f"--inter-ctc must be in [0, 1), got {cfg.inter_ctc_weight}")
    if cfg.inter_ctc_weight == 0.0:
        return None
    if num_layers < 2:
        raise InputError("--inter-ctc needs a model with 2 or more LSTM layers")
    layer = (num_layers + 1) // 2 if cfg.inter_ctc_layer is None else cfg.inter_ctc_layer
    if not 1 <= layer < num_layers:
        raise InputError(f"--inter-ctc-layer {layer}: must be 1 to {num_layers - 1} for {num_layers} LSTM layers")
    return layer


def train(cfg: TrainConfig) -> dict:
    """Train to `cfg.out`: last.pt (resumable), best.pt (by dev WER), metrics.jsonl, train.log.

    Under torchrun every process runs this; rank 0 alone writes and logs below warnings.
    """
    resolve_device(cfg.device, allow_auto=True)  # a device this machine lacks: one line, not torch's traceback
    world = distributed.setup(cfg.device)
    out = Path(cfg.out)
    logger, handler, level = logging.getLogger("asr"), None, logging.getLogger("asr").level
    if world.is_main:
        make_dirs(out)
        handler = _log_to_file(out / "train.log")
    else:
        logger.setLevel(logging.WARNING)
    try:
        summary = _train(cfg, out, world)
        distributed.barrier(world)  # ranks leave together; see distributed.leave for how a worker process ends
        return summary
    finally:
        if handler:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)
        distributed.teardown(world)


def _train(cfg: TrainConfig, out: Path, world: distributed.World) -> dict:
    device = world.device
    threads, workers = cpu_plan(cfg.threads, cfg.workers, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    set_threads(threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    train_utts = load_utterances(cfg.train, "training")
    dev_utts = load_utterances([cfg.dev], "dev") if cfg.dev else []
    distributed.barrier(world)  # a resuming rank must not read last.pt before rank 0 has made the folder
    resume_state = read_checkpoint(out / "last.pt") if cfg.resume and (out / "last.pt").exists() else None
    if cfg.resume and resume_state is None:
        log.warning("--resume: no %s yet, starting from scratch", out / "last.pt")

    # Fine-tuning (--init) keeps the network, tokenizer and feature statistics it starts from, with a fresh
    # optimizer and schedule; a resumed run keeps everything.
    init_state = read_checkpoint(cfg.init) if cfg.init and not resume_state else None
    init_weights = single_model_weights(init_state, cfg.init, "--init") if init_state else None
    source = resume_state or init_state
    new_units = init_state is not None and cfg.tokenizer is not None and not _same_units(
        cfg.tokenizer, init_state["tokenizer"])
    if source and not new_units:  # the tokenizer and feature statistics are part of what was trained
        tokenizer = tokenizer_from_dict(source["tokenizer"])
    else:
        try:
            tokenizer = build_tokenizer(cfg.tokenizer or "char", (u.text for u in train_utts))
        except ValueError as e:
            raise InputError(f"--tokenizer {cfg.tokenizer}: {e}") from None
    if source:
        features = FeatureExtractor.from_dict(source["features"])
        cfg = replace(cfg, feature_norm=features.config.normalize)  # the metadata records what is used
    else:
        try:
            features = FeatureExtractor(FeatureConfig(normalize=cfg.feature_norm))
        except ValueError as e:
            raise InputError(f"--feature-norm: {e}") from None
        sample = random.Random(cfg.seed).sample(train_utts, min(cfg.stats_utterances, len(train_utts)))
        features.set_stats(_readable_waves(sample))
    train_utts = filter_trainable(train_utts, tokenizer, cfg)
    if resume_state:  # the network is the one that was trained, whatever --preset says now
        model_cfg = ModelConfig(**resume_state["model_config"])
    else:
        model_cfg = (replace(ModelConfig(**init_state["model_config"]), vocab_size=tokenizer.vocab_size)
                     if init_state else preset_config(cfg.preset, tokenizer.vocab_size, features.config.n_mels))
        if cfg.dropout is not None:
            if not 0.0 <= cfg.dropout < 1.0:
                raise InputError(f"--dropout must be in [0, 1), got {cfg.dropout}")
            model_cfg = replace(model_cfg, dropout=cfg.dropout)
    model = Model(model_cfg).to(device)
    inter_layer = _inter_ctc_layer(cfg, model_cfg.num_layers)
    if init_state and new_units:
        fresh = transfer_weights(model, init_weights)
        log.info("starting from the weights of %s below its output layer; new %s units (%d symbols), so %s "
                 "start afresh", cfg.init, tokenizer.kind, tokenizer.vocab_size, ", ".join(fresh))
    elif init_state:
        model.load_state_dict(init_weights)
        log.info("starting from the weights of %s", cfg.init)
    n_params = sum(p.numel() for p in model.parameters())
    # The network as built: on --init or --resume it is the checkpoint's, whatever --preset says.
    log.info("%s (%.2f h), %d dev; %s, %s tokenizer (%d symbols), %s feature normalisation, "
             "%.2fM parameters, %s; %s and %s on %s", count_noun(len(train_utts), "training utterance"),
             sum(u.duration for u in train_utts) / 3600, len(dev_utts), describe(model_cfg), tokenizer.kind,
             tokenizer.vocab_size, features.config.normalize, n_params / 1e6, device,
             count_noun(threads, "torch thread"), count_noun(workers, "DataLoader worker"),
             count_noun(available_cores(), "CPU core"))

    wave_augment = [SpeedPerturb()] if cfg.speed_perturb else []
    if cfg.rir_dir:  # the room acts on the speech alone, before the noise: noise recordings carry their own room
        try:
            wave_augment.append(Reverberator.from_folder(cfg.rir_dir, cfg.rir_prob))
        except ValueError as e:
            raise InputError(f"--rir-prob: {e}") from None
    if cfg.noise_dir:
        try:
            wave_augment.append(NoiseMixer.from_folder(cfg.noise_dir, cfg.noise_snr, cfg.noise_prob))
        except ValueError as e:
            raise InputError(f"--noise-prob: {e}") from None
    if cfg.augment_ramp < 0:
        raise InputError(f"--augment-ramp must be 0 or more epochs, got {cfg.augment_ramp}")
    if cfg.augment_ramp and not wave_augment:
        log.warning("--augment-ramp has nothing to ease in without --speed-perturb, --rir-dir or --noise-dir")
    spec_augment = SpecAugment(freq_masks=cfg.freq_masks, time_masks=cfg.time_masks) if cfg.spec_augment else None
    dataset = SpeechDataset(train_utts, features, tokenizer, spec_augment,
                            seed=cfg.seed, wave_augment=wave_augment, augment_ramp=cfg.augment_ramp)
    # --max-batch-seconds is per process: the global batch under DDP is that times the world size.
    sampler = BucketBatchSampler([u.duration for u in train_utts], cfg.max_batch_seconds, seed=cfg.seed,
                                 sorted_first_epoch=cfg.sorted_first_epoch, num_replicas=world.size,
                                 rank=world.rank)
    # The loader's own generator: drawing worker seeds from the global RNG would shift dropout's
    # random stream every time an epoch (or a resumed part of one) starts.
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                         num_workers=workers, generator=torch.Generator().manual_seed(cfg.seed))
    steps_per_epoch = math.ceil(len(sampler) / cfg.accumulate)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = effective_warmup(cfg.warmup_steps, total_steps)
    if warmup < cfg.warmup_steps:
        log.info("warm-up: %s, not --warmup-steps %d: the run has only %s (%d an epoch x %s), and warm-up "
                 "takes at most %d %% of a run, so the learning rate reaches its peak %.1e at step %d",
                 count_noun(warmup, "step"), cfg.warmup_steps, count_noun(total_steps, "optimizer step"),
                 steps_per_epoch, count_noun(cfg.epochs, "epoch"), round(100 * WARMUP_SHARE), cfg.lr, warmup)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, total_steps, cfg.final_lr_ratio))

    # Everything a resumed run needs to continue as if it had not stopped (with the model, optimizer,
    # scheduler and RNG state): the epoch in progress and how many of its batches are done.
    progress = {"step": 0, "epoch": 0, "batch": 0, "best_wer": math.inf, "best_cer": math.inf, "elapsed": 0.0,
                "epoch_seconds": 0.0, "epoch_loss": 0.0, "epoch_batches": 0, "epoch_audio": 0.0}

    def clock(t0: float) -> float:  # add the time since t0 to the run's and the epoch's totals
        now = time.perf_counter()
        progress["elapsed"] += now - t0
        progress["epoch_seconds"] += now - t0
        return now
    if resume_state:
        model.load_state_dict(resume_state["state_dict"])
        ts = resume_state["train_state"]
        if "progress" not in ts:
            raise InputError(f"{out / 'last.pt'}: written by an older asr train that did not record its place in "
                             "the epoch, so it cannot be resumed exactly; start a new run, or fine-tune from it "
                             "with --init")
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        progress.update(ts["progress"])
        if not world.is_main:  # the epoch's sums so far are all ranks' together: rank 0 carries them on
            progress.update({k: 0 for k in EPOCH_SUMS})
        if "rng_states" in ts:
            if not distributed.restore_rng(ts["rng_states"], world):
                torch.set_rng_state(ts["rng_states"][0]["cpu"])
                log.warning("last.pt was written by %d processes and this run has %d: the training goes on, but "
                            "dropout's random draws will not be those of an uninterrupted run",
                            len(ts["rng_states"]), world.size)
        else:  # written before each rank's state was kept: rank 0's CPU state
            torch.set_rng_state(ts["torch_rng"])
        if world.is_main:
            _drop_metrics_after(out / "metrics.jsonl", completed_epochs=progress["epoch"])
        log.info("resumed from %s: epoch %d, batch %d, step %d", out / "last.pt", progress["epoch"] + 1,
                 progress["batch"], progress["step"])

    net = model  # what runs the batches; checkpoints always store the bare `model`
    if world.size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    autocast, scaler = _precision(cfg.precision, device)
    if resume_state and resume_state["train_state"].get("scaler"):
        scaler.load_state_dict(resume_state["train_state"]["scaler"])

    def save_last(metadata: dict, rng: list[dict], epoch_totals: dict | None = None) -> None:
        # Mid-epoch, `epoch_totals` holds the epoch's sums so far over all ranks: a resumed run goes on from them.
        # `rng`: every rank's random state (distributed.rng_states), for each to continue its own.
        train_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                       "scaler": scaler.state_dict(),
                       "progress": {**progress, **(epoch_totals or {})}, "rng_states": rng}
        save_checkpoint(out / "last.pt", model, tokenizer, features, metadata, train_state)

    metrics = MetricsLog(out) if world.is_main else None  # it flushes every record: a kill loses none
    bad_in_a_row, skipped_audio = 0, {}
    while progress["epoch"] < cfg.epochs:
        epoch = progress["epoch"]
        model.train()
        sampler.set_epoch(epoch, start_batch=progress["batch"])
        dataset.epoch = epoch
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        bar = progress_bar(len(sampler), epoch + 1)
        bar.update(progress["batch"])
        for batch in loader:
            bar.update(1)
            progress["batch"] += 1
            skipped_audio.update(batch.skipped)
            ends_group = progress["batch"] % cfg.accumulate == 0 or progress["batch"] == len(sampler)
            # All ranks skip a batch that is empty on any of them (its files unreadable), before the forward: a
            # rank that skipped a forward or backward the others ran would leave them waiting in DDP's collectives.
            if not distributed.all_true(bool(batch.ids), world):
                continue
            # Under DDP only a group's last micro-batch all-reduces, and its backward averages the whole accumulated
            # gradient. The optimizer steps only after that micro-batch, and only when it was not skipped, so always
            # on gradients in sync; a skipped one (skipped on all ranks alike) carries the group's gradient over into
            # the next group, whose last micro-batch syncs it. (A skipped forward that ran in sync leaves DDP set to
            # all-reduce the next backward, no_sync or not: harmless, as averaging sums of gradients is linear.)
            with distributed.gradient_sync(net, ends_group):
                targets, target_lengths = batch.targets.to(device), batch.target_lengths.to(device)
                with autocast():
                    outputs = net(batch.feats.to(device), batch.lengths.to(device), intermediate=inter_layer)
                log_probs, out_lengths = outputs[:2]
                loss = ctc_loss(log_probs, out_lengths, targets, target_lengths)  # what is logged
                if inter_layer is not None:
                    inter = ctc_loss(outputs[2], out_lengths, targets, target_lengths)
                    objective = (1 - cfg.inter_ctc_weight) * loss + cfg.inter_ctc_weight * inter
                else:
                    objective = loss
                if not distributed.all_true(bool(torch.isfinite(objective)), world):
                    bad_in_a_row += 1
                    if not torch.isfinite(objective):
                        log.warning("step %d: non-finite loss, batch skipped (ids: %s)", progress["step"],
                                    ", ".join(batch.ids[:8]))
                    if bad_in_a_row >= cfg.max_bad_batches:
                        raise InputError(f"training stopped: {bad_in_a_row} non-finite losses in a row "
                                         "(lower --lr, or check the data of the batches named above)")
                    optimizer.zero_grad(set_to_none=True)  # also drops what this accumulation had gathered
                    continue
                bad_in_a_row = 0
                scaler.scale(objective / cfg.accumulate).backward()
            progress["epoch_loss"] += loss.item()
            progress["epoch_batches"] += 1
            progress["epoch_audio"] += float(batch.lengths.sum()) * features.config.frame_seconds
            if not ends_group:
                continue  # gather more gradient before the optimizer step
            scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scale = scaler.get_scale()  # 1.0, and never lowered, when the scaler is off (all but fp16)
            scaler.step(optimizer)
            scaler.update()
            # fp16: the scaler skips the optimizer step when the gradients overflowed, and lowers the scale.
            # The schedule then waits too, so the learning rate follows the steps actually taken.
            if scaler.get_scale() >= scale:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress["step"] += 1
            bar.set_postfix(progress_postfix(loss.item(), scheduler.get_last_lr()[0], progress["epoch_audio"],
                                             progress["epoch_seconds"] + time.perf_counter() - t0))
            if progress["step"] % cfg.log_every == 0:
                log.info("epoch %d step %d loss %.3f grad-norm %.2f lr %.2e", epoch + 1, progress["step"],
                         loss.item(), grad_norm, scheduler.get_last_lr()[0])
            if cfg.save_every and progress["step"] % cfg.save_every == 0 and progress["batch"] < len(sampler):
                totals = _epoch_totals(progress, world)  # collectives: every rank takes part
                rng = distributed.rng_states(world)
                if world.is_main:
                    t0 = clock(t0)
                    metadata = _metadata(cfg, progress["step"], epoch, {}, progress["elapsed"])
                    save_last(metadata, rng, totals)
                    _save_numbered_checkpoint(out, "step", progress["step"], cfg.keep_last, model, tokenizer,
                                              features, metadata)
        bar.close()
        clock(t0)
        train_seconds = progress["epoch_seconds"]
        totals = _epoch_totals(progress, world)
        rng = distributed.rng_states(world)  # validation below draws nothing random
        record = {"epoch": epoch + 1, "step": progress["step"],
                  "train_loss": totals["epoch_loss"] / max(1, totals["epoch_batches"]),
                  "lr": scheduler.get_last_lr()[0], "epoch_seconds": round(train_seconds, 1),
                  "audio_seconds_per_second": round(totals["epoch_audio"] / max(train_seconds, 1e-9), 1)}
        if wave_augment and dataset.augment_share() < 1.0:
            record["augmented_share"] = round(dataset.augment_share(), 3)
        if world.is_main:  # rank 0 validates and writes; the others go on to the next epoch
            if dev_utts:
                cause = collapse_cause(progress["step"], total_steps, warmup, steps_per_epoch,
                                       scheduler.get_last_lr()[0], cfg.lr)
                record.update(_validate(model, features, tokenizer, dev_utts, cfg, device, cause))
            log.info("epoch %d: %s", epoch + 1, json.dumps(record))
            metrics.log(record)
            metadata = _metadata(cfg, progress["step"], epoch + 1, record, progress["elapsed"])
            if dev_utts and is_best(record, progress):
                progress.update(best_wer=record["dev_wer"], best_cer=record["dev_cer"])
                save_checkpoint(out / "best.pt", model, tokenizer, features, metadata)
            elif not dev_utts:  # without a dev set, the latest model is the best we know
                save_checkpoint(out / "best.pt", model, tokenizer, features, metadata)
            if cfg.keep_epochs:
                _save_numbered_checkpoint(out, "epoch", epoch + 1, cfg.keep_epochs, model, tokenizer, features,
                                          metadata)
        progress.update(epoch=epoch + 1, batch=0, epoch_loss=0.0, epoch_batches=0, epoch_audio=0.0, epoch_seconds=0.0)
        if world.is_main:
            save_last(metadata, rng)
    if world.size > 1:
        same = distributed.same_on_all_ranks(model, world)
        (log.info if same else log.warning)("weights %s on all %d ranks", "identical" if same else "DIFFER",
                                              world.size)
    if world.is_main:
        metrics.close()
        plot = plot_curves(out / "metrics.jsonl", out / "curves.png")
        if plot:
            log.info("training curves: %s", plot)
    if skipped_audio:
        log.warning("%s could not be read and %s skipped:\n  %s", count_noun(len(skipped_audio), "training file"),
                    "was" if len(skipped_audio) == 1 else "were", "\n  ".join(skipped_audio.values()))
    best = progress["best_wer"]
    summary = {"steps": progress["step"], "best_dev_wer": None if best == math.inf else best,
               "train_seconds": round(progress["elapsed"], 1), "out": str(out)}
    log.info("done: %s", json.dumps(summary))
    return summary


def is_best(record: dict, progress: dict) -> bool:
    """Whether the epoch of `record` beats `progress`'s best so far: a lower dev WER, or the same WER with a CER
    no higher. Small dev sets tie on WER often, and the later of two epochs has trained longer."""
    return (record["dev_wer"], record["dev_cer"]) <= (progress["best_wer"], progress.get("best_cer", math.inf))


def _epoch_totals(progress: dict, world: distributed.World) -> dict:
    """The epoch's running sums (what its record averages) added up over all ranks; every rank must call it."""
    loss, batches, audio = distributed.sum_over_ranks([progress[k] for k in EPOCH_SUMS], world)
    return {"epoch_loss": loss, "epoch_batches": round(batches), "epoch_audio": audio}


def _precision(name: str, device: torch.device):
    """-> (autocast context factory, gradient scaler), decided once for the run.

    bf16 keeps float32's range, so it needs no loss scaling; fp16 does. The weights and optimizer
    stay float32 either way, and the CTC loss is always float32 (see ctc_loss).
    """
    if name == "auto":
        name = "bf16" if device.type == "cuda" else "fp32"
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in dtypes:
        raise InputError(f"--precision must be auto, fp32, bf16 or fp16, got {name!r}")
    dtype = dtypes[name]
    scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")
    if dtype is None:
        return contextlib.nullcontext, scaler
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def _drop_metrics_after(path: Path, completed_epochs: int) -> None:
    """Forget epoch records newer than the checkpoint: a run killed between writing an epoch's record
    and its checkpoint redoes that epoch's end, and must not log it twice."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("epoch", 0) <= completed_epochs]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _save_numbered_checkpoint(out: Path, kind: str, number: int, keep: int, model, tokenizer, features,
                              metadata) -> None:
    """`step-N.pt` or `epoch-N.pt` (weights only, for `asr average`), keeping the newest `keep` of that kind."""
    save_checkpoint(out / f"{kind}-{number}.pt", model, tokenizer, features, metadata)
    saved = sorted(out.glob(f"{kind}-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    for old in saved[:-keep] if keep > 0 else saved:
        old.unlink(missing_ok=True)


def _validate(model, features, tokenizer, dev_utts, cfg, device, cause: str | None = None) -> dict:
    """Greedy WER/CER on the dev set, a few examples, and a warning when the outputs have collapsed (naming
    `cause`, from `collapse_cause`, where the schedule explains it)."""
    t0, counts = time.perf_counter(), {}
    decoded = decode_utterances(model, features, tokenizer, dev_utts, device=device, frame_counts=counts)
    summary, rows = summarize(decoded, time.perf_counter() - t0)
    for row in rows[: cfg.dev_examples]:
        log.info("  ref: %s\n  hyp: %s", row["reference"], row["hypothesis"])
    blank = counts.get("blank", 0.0) / max(1, counts.get("frames", 0))
    warning = collapse_warning([r["hypothesis"] for r in rows], blank, cause)
    if warning:
        log.warning("%s", warning)
    return {"dev_wer": round(summary["wer"], 4), "dev_cer": round(summary["cer"], 4),
            "dev_blank_ratio": round(blank, 4)}


def _metadata(cfg: TrainConfig, step: int, epoch: int, record: dict, elapsed: float) -> dict:
    return {
        "code_version": asr.__version__,
        "train_manifests": [str(p) for p in cfg.train],
        "dev_manifest": cfg.dev,
        "train_config": {k: v for k, v in asdict(cfg).items() if k not in ("extra_metadata",)},
        "steps": step, "epochs": epoch, "train_seconds": round(elapsed, 1),
        "dev_wer": record.get("dev_wer"), "dev_cer": record.get("dev_cer"),
        "created": created_now(),
        **cfg.extra_metadata,
    }


def _readable_waves(utts):
    for u in utts:
        try:
            yield load_audio(u.audio)
        except InputError as e:
            log.warning("feature statistics: skipping %s", e)


def _log_to_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("asr").addHandler(handler)
    return handler
