import json
import math
from pathlib import Path

import pytest
import torch

from asr.data import Utterance, write_manifest
from asr.errors import InputError
from asr.evaluate import decode_utterances
from asr.model import load_checkpoint
from asr.text import CharTokenizer
from asr.train import TrainConfig, ctc_loss, filter_trainable, lr_factor, train

AN4 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "an4"
TWO_UTTERANCES = [("cen2-fash-b", "A M Y"), ("an253-fash-b", "GO")]


@pytest.fixture
def two_utterances(tmp_path) -> Path:
    if not AN4.is_dir():
        pytest.skip(f"real AN4 audio not found at {AN4}")
    from asr.audio import audio_duration

    utts = []
    for uid, text in TWO_UTTERANCES:
        audio = AN4 / "wav" / "an4_clstk" / "fash" / f"{uid}.sph"
        utts.append(Utterance(uid, str(audio), audio_duration(audio), text, "fash"))
    manifest = tmp_path / "two.jsonl"
    write_manifest(manifest, utts)
    return manifest


def test_tiny_model_overfits_two_real_utterances(two_utterances, tmp_path):
    torch.set_num_threads(2)
    out = tmp_path / "run"
    cfg = TrainConfig(train=[str(two_utterances)], dev=str(two_utterances), out=str(out), preset="tiny",
                      epochs=150, lr=1e-2, warmup_steps=10, spec_augment=False, workers=0, seed=0)
    summary = train(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] < 0.1 * records[0]["train_loss"]
    assert summary["best_dev_wer"] == 0.0
    model, tok, feats, meta = load_checkpoint(out / "best.pt")
    assert meta["dev_wer"] == 0.0 and meta["steps"] > 0
    from asr.data import read_manifest

    utts, _ = read_manifest(two_utterances)
    decoded = decode_utterances(model, feats, tok, utts)
    assert [d.hypothesis.text for d in decoded] == ["a m y", "go"]


def test_resume_continues_from_last_checkpoint(two_utterances, tmp_path):
    out = tmp_path / "run"
    base = dict(train=[str(two_utterances)], dev=str(two_utterances), out=str(out), preset="tiny",
                warmup_steps=2, workers=0)
    train(TrainConfig(**base, epochs=2))
    steps_after_two = torch.load(out / "last.pt", weights_only=True)["train_state"]["progress"]["step"]
    summary = train(TrainConfig(**base, epochs=3, resume=True))
    assert summary["steps"] == steps_after_two * 3 // 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_filter_drops_what_ctc_cannot_learn(caplog):
    cfg = TrainConfig(train=[], out="", min_duration=0.5, max_duration=10.0)
    tok = CharTokenizer()
    utts = [
        Utterance("ok", "x.wav", 2.0, "hello"),
        Utterance("short", "x.wav", 0.2, "hi"),
        Utterance("long", "x.wav", 12.0, "hi"),
        Utterance("dense", "x.wav", 0.6, "far too many letters for sixty milliseconds"),
        Utterance("digits", "x.wav", 2.0, "room 101"),
        Utterance("empty", "x.wav", 2.0, " "),
    ]
    kept = filter_trainable(utts, tok, cfg)
    assert [u.id for u in kept] == ["ok", "digits"]
    assert "too short" in caplog.text and "too long" in caplog.text and "output frames" in caplog.text
    assert "dropped 1 training utterance: empty transcript" in caplog.text
    assert "outside the vocabulary" in caplog.text and "'1' x2" in caplog.text


def test_lr_schedule_warms_up_then_decays():
    f = [lr_factor(s, 10, 100, 0.02) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[-1] == pytest.approx(0.02, abs=1e-3)


def test_ctc_loss_is_float32_and_finite_for_impossible_targets():
    log_probs = torch.randn(2, 3, 5).log_softmax(-1).to(torch.bfloat16)
    loss = ctc_loss(log_probs, torch.tensor([3, 3]), torch.tensor([1, 2, 3, 4, 1, 2, 3, 4]), torch.tensor([4, 4]))
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())


def test_non_finite_losses_skip_batches_then_stop_the_run(two_utterances, tmp_path, monkeypatch, caplog):
    import asr.train
    from asr.errors import InputError

    monkeypatch.setattr(asr.train, "ctc_loss", lambda *a: torch.tensor(float("nan"), requires_grad=True))
    cfg = TrainConfig(train=[str(two_utterances)], out=str(tmp_path / "run"), preset="tiny", epochs=5,
                      workers=0, max_bad_batches=3)
    with pytest.raises(InputError, match="3 non-finite losses in a row"):
        train(cfg)
    assert "non-finite loss, batch skipped" in caplog.text and "cen2-fash-b" in caplog.text


def test_resume_keeps_the_trained_network(two_utterances, tmp_path):
    out = tmp_path / "run"
    base = dict(train=[str(two_utterances)], out=str(out), warmup_steps=2, workers=0)
    train(TrainConfig(**base, preset="tiny", epochs=1))
    train(TrainConfig(**base, preset="small", epochs=2, resume=True))  # --preset is ignored on resume
    assert torch.load(out / "last.pt", weights_only=True)["model_config"]["hidden_size"] == 64


def test_resuming_a_last_pt_without_its_place_in_the_epoch_is_a_clear_error(two_utterances, tmp_path):
    from asr.errors import InputError

    out = tmp_path / "run"
    base = dict(train=[str(two_utterances)], out=str(out), preset="tiny", warmup_steps=2, workers=0)
    train(TrainConfig(**base, epochs=1))
    state = torch.load(out / "last.pt", weights_only=True)
    del state["train_state"]["progress"]  # as written by asr train before mid-epoch resumption
    torch.save(state, out / "last.pt")
    with pytest.raises(InputError, match="cannot be resumed exactly; start a new run, or fine-tune from it"):
        train(TrainConfig(**base, epochs=2, resume=True))


def test_init_fine_tunes_from_a_checkpoint(two_utterances, tmp_path, caplog):
    caplog.set_level("INFO")
    base = dict(train=[str(two_utterances)], warmup_steps=2, workers=0)
    train(TrainConfig(**base, out=str(tmp_path / "first"), preset="tiny", tokenizer="bpe:8", epochs=1))
    start = torch.load(tmp_path / "first" / "best.pt", weights_only=True)
    # --preset and --tokenizer give way to the checkpoint's; with lr 0 the weights stay where they began.
    train(TrainConfig(**base, out=str(tmp_path / "tuned"), init=str(tmp_path / "first" / "best.pt"),
                      preset="small", epochs=1, lr=0.0, dropout=0.5))
    tuned = torch.load(tmp_path / "tuned" / "last.pt", weights_only=True)
    assert "1 x BiLSTM 64, conv 8 ch (tiny)" in caplog.text  # the log names the network trained, not --preset
    assert tuned["tokenizer"] == start["tokenizer"]
    assert tuned["model_config"] == {**start["model_config"], "dropout": 0.5}
    for name, tensor in start["state_dict"].items():
        torch.testing.assert_close(tuned["state_dict"][name], tensor)
    assert tuned["train_state"]["progress"]["step"] == 1  # its own step count, not carried on from the first run


def test_init_with_other_units_keeps_the_network_below_the_output_layer(two_utterances, tmp_path, caplog):
    caplog.set_level("INFO")
    base = dict(train=[str(two_utterances)], warmup_steps=2, workers=0, epochs=1)
    train(TrainConfig(**base, out=str(tmp_path / "chars"), preset="tiny"))
    start = torch.load(tmp_path / "chars" / "best.pt", weights_only=True)
    train(TrainConfig(**base, out=str(tmp_path / "bpe"), init=str(tmp_path / "chars" / "best.pt"),
                      tokenizer="bpe:8", lr=0.0))
    tuned = torch.load(tmp_path / "bpe" / "last.pt", weights_only=True)
    assert tuned["tokenizer"]["kind"] == "bpe" and tuned["model_config"]["vocab_size"] == 9  # 8 pieces + blank
    assert tuned["state_dict"]["out.weight"].shape[0] == 9
    for name, tensor in start["state_dict"].items():
        if not name.startswith("out."):
            torch.testing.assert_close(tuned["state_dict"][name], tensor)
    assert "new bpe units (9 symbols), so out.bias, out.weight start afresh" in caplog.text
    # The same units as the checkpoint's are plain fine-tuning: every weight carried over.
    train(TrainConfig(**base, out=str(tmp_path / "same"), init=str(tmp_path / "chars" / "best.pt"),
                      tokenizer="char", lr=0.0))
    same = torch.load(tmp_path / "same" / "last.pt", weights_only=True)
    torch.testing.assert_close(same["state_dict"]["out.weight"], start["state_dict"]["out.weight"])


def test_feature_normalisation_is_chosen_at_the_start_and_travels_in_the_checkpoint(two_utterances, tmp_path):
    base = dict(train=[str(two_utterances)], preset="tiny", epochs=1, warmup_steps=2, workers=0)
    train(TrainConfig(**base, out=str(tmp_path / "default")))
    _, _, features, _ = load_checkpoint(tmp_path / "default" / "best.pt")
    assert features.config.normalize == "utterance"
    train(TrainConfig(**base, out=str(tmp_path / "first"), feature_norm="global"))
    _, _, features, _ = load_checkpoint(tmp_path / "first" / "best.pt")
    assert features.config.normalize == "global"
    train(TrainConfig(**base, out=str(tmp_path / "tuned"), init=str(tmp_path / "first" / "best.pt")))
    _, _, features, metadata = load_checkpoint(tmp_path / "tuned" / "best.pt")  # --init keeps it over the default
    assert features.config.normalize == "global"
    assert metadata["train_config"]["feature_norm"] == "global"  # what was used, not the default it overrode


def test_bpe_tokenizer_travels_in_the_checkpoint(two_utterances, tmp_path):
    from asr.text import BPETokenizer

    out = tmp_path / "run"
    train(TrainConfig(train=[str(two_utterances)], out=str(out), preset="tiny", tokenizer="bpe:8", epochs=1,
                      workers=0))
    model, tok, _, _ = load_checkpoint(out / "best.pt")  # weights_only=True inside
    assert isinstance(tok, BPETokenizer) and model.config.vocab_size == tok.vocab_size
    assert tok.decode(tok.encode("A M Y")) == "a m y"


def test_training_with_speed_perturbation_rooms_and_noise(two_utterances, tmp_path):
    import numpy as np
    import soundfile

    noise, rooms = tmp_path / "noise", tmp_path / "rooms"
    noise.mkdir()
    rooms.mkdir()
    soundfile.write(noise / "n.wav", (0.05 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 16000)
    decay = np.exp(-np.arange(4000) / 800) * np.random.default_rng(1).standard_normal(4000)
    soundfile.write(rooms / "r.wav", decay.astype(np.float32), 16000, subtype="FLOAT")
    out = tmp_path / "run"
    summary = train(TrainConfig(train=[str(two_utterances)], out=str(out), preset="tiny", epochs=2, workers=0,
                                speed_perturb=True, noise_dir=str(noise), noise_snr=(10.0, 20.0),
                                rir_dir=str(rooms), rir_prob=0.5))
    assert summary["steps"] == 2 and (out / "best.pt").is_file()
    with pytest.raises(InputError, match=r"--noise-prob: .* must be in \(0, 1\], got 0.0"):
        train(TrainConfig(train=[str(two_utterances)], out=str(tmp_path / "bad"), preset="tiny", epochs=1, workers=0,
                          noise_dir=str(noise), noise_prob=0.0))
    with pytest.raises(InputError, match=r"--rir-prob: .* must be in \(0, 1\], got 2.0"):
        train(TrainConfig(train=[str(two_utterances)], out=str(tmp_path / "bad"), preset="tiny", epochs=1, workers=0,
                          rir_dir=str(rooms), rir_prob=2.0))
    with pytest.raises(InputError, match="no such room impulse response folder"):
        train(TrainConfig(train=[str(two_utterances)], out=str(tmp_path / "bad"), preset="tiny", epochs=1, workers=0,
                          rir_dir=str(tmp_path / "nowhere")))
    ramped = tmp_path / "ramped"
    train(TrainConfig(train=[str(two_utterances)], out=str(ramped), preset="tiny", epochs=3, workers=0,
                      speed_perturb=True, augment_ramp=2))
    records = [json.loads(line) for line in (ramped / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("augmented_share") for r in records] == [0.333, 0.667, None]
    with pytest.raises(InputError, match="--augment-ramp must be 0 or more epochs, got -1"):
        train(TrainConfig(train=[str(two_utterances)], out=str(tmp_path / "bad"), preset="tiny", epochs=1, workers=0,
                          speed_perturb=True, augment_ramp=-1))


def test_augmented_items_are_reproducible(two_utterances):
    from asr.audio import FeatureExtractor, SpecAugment, SpeedPerturb
    from asr.data import SpeechDataset, read_manifest

    utts, _ = read_manifest(two_utterances)
    fe = FeatureExtractor()

    def item(epoch):
        ds = SpeechDataset(utts, fe, CharTokenizer(), SpecAugment(), seed=3, wave_augment=[SpeedPerturb()])
        ds.epoch = epoch
        return [ds[i]["feats"] for i in range(len(utts))]

    a, b = item(0), item(0)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    later = [item(e) for e in range(1, 6)]
    assert any(not torch.equal(a[0], x[0]) for x in later)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_with_float32_weights_and_resumes(two_utterances, tmp_path, precision, recwarn):
    out = tmp_path / "run"
    base = dict(train=[str(two_utterances)], out=str(out), preset="tiny", workers=0, precision=precision)
    train(TrainConfig(**base, epochs=2))
    summary = train(TrainConfig(**base, epochs=3, resume=True))
    state = torch.load(out / "last.pt", weights_only=True)
    assert summary["steps"] == 3
    # A step the fp16 scaler skips (overflow) does not advance the schedule either.
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]
    assert state["train_state"]["scheduler"]["last_epoch"] <= 3
    assert all(v.dtype == torch.float32 for v in state["state_dict"].values() if v.is_floating_point())
    assert all(math.isfinite(json.loads(x)["train_loss"]) for x in (out / "metrics.jsonl").read_text().splitlines())
    assert bool(state["train_state"]["scaler"]) == (precision == "fp16")  # the scale travels for resume


def test_intermediate_ctc_changes_the_objective_not_the_model(two_utterances, tmp_path):
    base = dict(train=[str(two_utterances)], preset="small", epochs=1, warmup_steps=1, workers=0, seed=0)
    train(TrainConfig(**base, out=str(tmp_path / "plain")))
    summary = train(TrainConfig(**base, out=str(tmp_path / "inter"), inter_ctc_weight=0.3))
    plain = torch.load(tmp_path / "plain" / "last.pt", weights_only=True)
    inter = torch.load(tmp_path / "inter" / "last.pt", weights_only=True)
    assert inter["state_dict"].keys() == plain["state_dict"].keys()  # no parameter added
    assert inter["metadata"]["train_config"]["inter_ctc_weight"] == 0.3
    changed = [k for k in plain["state_dict"] if not torch.equal(plain["state_dict"][k], inter["state_dict"][k])]
    assert "lstm.layers.0.fwd.weight_ih_l0" in changed and summary["steps"] == 1
    with pytest.raises(InputError, match="2 or more LSTM layers"):
        train(TrainConfig(**{**base, "preset": "tiny"}, out=str(tmp_path / "tiny"), inter_ctc_weight=0.3))
    with pytest.raises(InputError, match="--inter-ctc-layer 3: must be 1 to 2"):
        train(TrainConfig(**base, out=str(tmp_path / "bad"), inter_ctc_weight=0.3, inter_ctc_layer=3))


@pytest.fixture
def noise_utterances(tmp_path) -> Path:
    """Two seconds of noise with transcripts: enough for the schedule and checkpoints, not for learning."""
    import numpy as np
    import soundfile

    rng = np.random.default_rng(0)
    utts = []
    for i, text in enumerate(["go", "stop"]):
        path = tmp_path / f"n{i}.wav"
        soundfile.write(path, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
        utts.append(Utterance(f"n{i}", str(path), 1.0, text, "s"))
    write_manifest(tmp_path / "noise.jsonl", utts)
    return tmp_path / "noise.jsonl"


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_effective_warmup_is_at_most_a_tenth_of_the_run():
    from asr.train import effective_warmup

    assert effective_warmup(300, 60) == 6  # 20 utterances, 2 steps an epoch, 30 epochs: issue 30
    assert effective_warmup(300, 4400) == 300  # AN4's 70 epochs: as configured
    assert effective_warmup(300, 3) == 1 and effective_warmup(0, 60) == 0


def test_short_run_reaches_the_peak_and_blames_its_length(noise_utterances, tmp_path, caplog, monkeypatch,
                                                          keep_threads):
    """With the default 300 warm-up steps a 3-step run ended at 1 % of --lr, and the collapse warning only
    said 'check the learning rate' (issue 30)."""
    import asr.train

    causes = []
    monkeypatch.setattr(asr.train, "collapse_warning", lambda hyps, blank, cause=None: causes.append(cause))
    out = tmp_path / "run"
    caplog.set_level("INFO", logger="asr")
    train(TrainConfig(train=[str(noise_utterances)], dev=str(noise_utterances), out=str(out), preset="tiny",
                      epochs=3, workers=0, threads=1))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[0]["lr"] == pytest.approx(2e-3)  # the peak, after a 1-step warm-up
    assert "warm-up: 1 step, not --warmup-steps 300: the run has only 3 optimizer steps" in caplog.text
    assert "1 torch thread and 0 DataLoader workers" in caplog.text
    assert causes and all(c.startswith("too few optimizer steps: this run has 3 (1 an epoch)") for c in causes)


def test_cpu_plan_does_not_oversubscribe(monkeypatch):
    """Two default threads beside a DataLoader worker on two cores trained 10x slower (issue 30)."""
    import asr.train
    from asr.train import cpu_plan

    for cores, plan in ((2, (1, 1)), (1, (1, 0)), (16, (15, 1))):
        monkeypatch.setattr(asr.train, "available_cores", lambda cores=cores: cores)
        assert cpu_plan(0, None) == plan
    assert cpu_plan(0, None, processes=4) == (3, 1)  # torchrun's 4 processes share 16 cores
    assert cpu_plan(0, 3) == (13, 3) and cpu_plan(2, 0) == (2, 0)  # what is given is kept
    with pytest.raises(InputError, match="--workers and --threads must be 0 or more"):
        cpu_plan(0, -1)


def test_best_of_tied_epochs_is_the_lower_cer_then_the_later(noise_utterances, tmp_path, monkeypatch,
                                                           keep_threads):
    """best.pt kept the first of epochs tied on dev WER, even when a later one had a much lower CER (issue 30)."""
    import asr.train
    from asr.train import is_best

    best = {"best_wer": 0.5, "best_cer": 0.3}
    assert is_best({"dev_wer": 0.5, "dev_cer": 0.2}, best) and is_best({"dev_wer": 0.5, "dev_cer": 0.3}, best)
    assert not is_best({"dev_wer": 0.5, "dev_cer": 0.4}, best) and not is_best({"dev_wer": 0.6, "dev_cer": 0}, best)
    assert is_best({"dev_wer": 0.4, "dev_cer": 0.9}, best)

    scores = iter([(0.5, 0.4), (0.5, 0.1), (0.5, 0.1), (0.5, 0.3)])
    monkeypatch.setattr(asr.train, "_validate",
                        lambda *a, **k: dict(zip(("dev_wer", "dev_cer"), next(scores), strict=True)))
    out = tmp_path / "run"
    train(TrainConfig(train=[str(noise_utterances)], dev=str(noise_utterances), out=str(out), preset="tiny",
                      epochs=4, workers=0, threads=1))
    meta = load_checkpoint(out / "best.pt")[3]
    assert (meta["epochs"], meta["dev_wer"], meta["dev_cer"]) == (3, 0.5, 0.1)


def test_train_refuses_a_device_this_machine_lacks(noise_utterances, tmp_path):
    with pytest.raises(InputError, match="device cuda:99: not available on this machine"):
        train(TrainConfig(train=[str(noise_utterances)], out=str(tmp_path / "run"), device="cuda:99"))
    assert not (tmp_path / "run").exists()
