"""Checkpoint averaging: the mean of the weights, the checks on the inputs, and `asr average`."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr.audio import FeatureConfig, FeatureExtractor
from asr.average import average_checkpoints, find_last_checkpoints, write_average
from asr.cli import main
from asr.errors import InputError
from asr.model import ENSEMBLE_VERSION, Ensemble, Model, load_checkpoint, preset_config, save_checkpoint
from asr.text import CharTokenizer

REPO = Path(__file__).resolve().parents[1]
N_MELS = 16  # small feature extractor, quick to build


def _features() -> FeatureExtractor:
    return FeatureExtractor(FeatureConfig(n_mels=N_MELS), mean=torch.linspace(-1, 1, N_MELS),
                            std=torch.linspace(0.5, 2, N_MELS))


def _save(path: Path, seed: int, steps: int, preset: str = "tiny", tokenizer=None, features=None,
          **metadata) -> Path:
    torch.manual_seed(seed)
    tokenizer = tokenizer or CharTokenizer()
    model = Model(preset_config(preset, tokenizer.vocab_size, n_mels=N_MELS))
    save_checkpoint(path, model, tokenizer, features or _features(), {"steps": steps, "epochs": seed, **metadata},
                    train_state={"optimizer": {"step": torch.tensor(steps)}})
    return path


@pytest.fixture
def three(tmp_path) -> list[Path]:
    return [_save(tmp_path / f"epoch-{i}.pt", seed=i, steps=100 * i) for i in (1, 2, 3)]


@pytest.mark.parametrize("ensemble", [False, True])
def test_per_input_dev_scores_are_listed_not_passed_off_as_the_results(tmp_path, ensemble):
    a, b = (_save(tmp_path / f"{n}.pt", seed=i, steps=100, dev_wer=w, dev_cer=w / 2)
            for i, (n, w) in enumerate([("a", 0.2), ("b", 0.3)]))
    kind = "ensemble" if ensemble else "averaged"
    first = write_average([a, b], tmp_path / "ab.pt", ensemble=ensemble)["metadata"]
    assert "dev_wer" not in first and "dev_cer" not in first and first[f"{kind}_dev_wer"] == [0.2, 0.3]
    again = write_average([tmp_path / "ab.pt", a], tmp_path / "aba.pt", ensemble=ensemble)["metadata"]
    assert again[f"{kind}_steps"] == [100, 100]
    assert again[f"{kind}_dev_wer"] == [None, 0.2]  # the combined file's own list is not carried on
    assert ("averaged_from" in again) != ensemble and ("ensemble_of" in again) == ensemble


def test_average_is_the_mean_of_every_float_tensor(three, tmp_path):
    avg = average_checkpoints(three)
    inputs = [torch.load(p, weights_only=True) for p in three]
    assert "train_state" not in avg
    assert avg["model_config"] == inputs[0]["model_config"] and avg["tokenizer"] == inputs[0]["tokenizer"]
    assert avg["state_dict"].keys() == inputs[0]["state_dict"].keys()
    floats = changed = 0
    for name, tensor in avg["state_dict"].items():
        if tensor.is_floating_point():
            floats += 1
            expected = torch.stack([s["state_dict"][name] for s in inputs]).mean(0)
            assert tensor.dtype == inputs[0]["state_dict"][name].dtype
            assert torch.allclose(tensor, expected, atol=1e-7), name
            changed += not torch.equal(tensor, inputs[0]["state_dict"][name])
        else:
            assert torch.equal(tensor, inputs[-1]["state_dict"][name])
    assert changed > floats / 2  # the inputs really differ (norm layers start out equal)
    assert avg["metadata"]["averaged_from"] == [str(p) for p in three]
    assert avg["metadata"]["averaged_steps"] == [100, 200, 300]
    assert avg["metadata"]["epochs"] == 1  # the rest of the metadata is the first file's

    out = tmp_path / "avg.pt"
    write_average(three, out)
    assert torch.load(out, weights_only=True)["metadata"]["averaged_steps"] == [100, 200, 300]
    model, tokenizer, features, metadata = load_checkpoint(out)
    assert tokenizer.to_dict() == CharTokenizer().to_dict() and torch.equal(features.mean, _features().mean)
    log_probs, lengths = model(torch.randn(2, 40, N_MELS), torch.tensor([40, 25]))
    assert log_probs.shape == (2, 10, 29) and lengths.tolist() == [10, 7]
    assert torch.isfinite(log_probs).all()


def test_integer_tensors_come_from_the_last_file(tmp_path):
    paths = []
    for i in (1, 2):
        state = torch.load(_save(tmp_path / f"{i}.pt", seed=i, steps=i), weights_only=True)
        state["state_dict"]["counter"] = torch.tensor(i * 10)
        torch.save(state, tmp_path / f"{i}.pt")
        paths.append(tmp_path / f"{i}.pt")
    assert average_checkpoints(paths)["state_dict"]["counter"].item() == 20


def test_half_precision_is_averaged_in_float64(tmp_path):
    paths = []
    for i, value in enumerate([1.0, 1.0 + 2**-10, 1.0 + 2**-10]):
        state = torch.load(_save(tmp_path / f"{i}.pt", seed=0, steps=i), weights_only=True)
        state["state_dict"] = {k: torch.full_like(v, value, dtype=torch.float16) if v.is_floating_point() else v
                               for k, v in state["state_dict"].items()}
        torch.save(state, tmp_path / f"{i}.pt")
        paths.append(tmp_path / f"{i}.pt")
    avg = average_checkpoints(paths)["state_dict"]
    tensor = next(v for v in avg.values() if v.is_floating_point())
    assert tensor.dtype == torch.float16
    assert torch.all(tensor == torch.tensor(1.0 + 2 * 2**-10 / 3, dtype=torch.float64).half())


def test_half_stores_float16_that_loads_and_computes_in_float32(three, tmp_path, capsys):
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    write_average(three, full)
    assert main(["average", *map(str, three), "--out", str(half), "--half"]) == 0
    assert capsys.readouterr().out == f"{half}: average of 3 checkpoints, stored in float16\n"
    stored = torch.load(half, weights_only=True)["state_dict"]
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert half.stat().st_size < 0.6 * full.stat().st_size

    (a, *_), (b, *_) = load_checkpoint(full), load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in b.parameters())
    feats = torch.randn(2, 40, N_MELS)
    lengths = torch.tensor([40, 31])
    with torch.no_grad():
        torch.testing.assert_close(b(feats, lengths)[0], a(feats, lengths)[0], atol=2e-3, rtol=0)


@pytest.mark.parametrize("odd_one", [
    {"preset": "small"},
    {"tokenizer": CharTokenizer(" abcdefghijklmnopqrstuvwxyz'")},
    {"features": FeatureExtractor(FeatureConfig(n_mels=N_MELS), mean=torch.zeros(N_MELS), std=torch.ones(N_MELS))},
], ids=["preset", "tokenizer", "feature-stats"])
def test_mismatched_checkpoints_are_refused_naming_the_file(three, tmp_path, odd_one):
    odd = _save(tmp_path / "odd.pt", seed=9, steps=900, **odd_one)
    with pytest.raises(InputError, match="odd.pt") as e:
        average_checkpoints([*three, odd])
    assert str(three[0]) in str(e.value) and "differ" in str(e.value)


def test_fewer_than_two_or_missing_files_are_refused(three, tmp_path):
    with pytest.raises(InputError, match="at least 2"):
        average_checkpoints(three[:1])
    with pytest.raises(InputError, match="nope.pt"):
        average_checkpoints([three[0], tmp_path / "nope.pt"])


def test_last_k_picks_the_most_steps(tmp_path):
    for i, steps in [(1, 300), (2, 100), (3, 200)]:
        _save(tmp_path / f"step-{i}.pt", seed=i, steps=steps)
    _save(tmp_path / "last.pt", seed=7, steps=999)  # not a step-/epoch- file: ignored
    assert find_last_checkpoints(tmp_path, 2) == [tmp_path / "step-3.pt", tmp_path / "step-1.pt"]
    with pytest.raises(InputError, match="found 3"):
        find_last_checkpoints(tmp_path, 4)


def run(*args):
    return subprocess.run([sys.executable, "-m", "asr", "average", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_cli(three, tmp_path):
    out = tmp_path / "c.pt"
    proc = run(three[0], three[1], "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{out}: average of 2 checkpoints"]
    assert torch.load(out, weights_only=True)["metadata"]["averaged_steps"] == [100, 200]

    proc = run(three[0], tmp_path / "missing.pt", "--out", tmp_path / "e.pt")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "missing.pt" in errors[0], proc.stderr
    assert not (tmp_path / "e.pt").exists()


def test_cli_last_k_and_usage_errors(three, tmp_path, capsys):
    assert main(["average", "--last", "2", "--run", str(tmp_path), "--out", str(tmp_path / "d.pt")]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'd.pt'}: average of 2 checkpoints\n"
    assert torch.load(tmp_path / "d.pt", weights_only=True)["metadata"]["averaged_steps"] == [200, 300]
    for argv in ([str(three[0])], [str(three[0]), str(three[1]), "--last", "2", "--run", str(tmp_path)],
                 ["--last", "2"]):
        with pytest.raises(SystemExit) as e:
            main(["average", *argv, "--out", str(tmp_path / "f.pt")])
        assert e.value.code == 2
    assert not (tmp_path / "f.pt").exists()


# --- ensembles ----------------------------------------------------------------------------------


def test_ensemble_decodes_with_the_mean_of_its_members_posteriors(three, tmp_path, capsys):
    out = tmp_path / "ens.pt"
    assert main(["average", *map(str, three[:2]), "--out", str(out), "--ensemble"]) == 0
    assert capsys.readouterr().out == f"{out}: ensemble of 2 models\n"
    stored = torch.load(out, weights_only=True)
    assert "state_dict" not in stored and len(stored["members"]) == 2 and stored["version"] == ENSEMBLE_VERSION
    assert stored["metadata"]["ensemble_of"] == [str(p) for p in three[:2]]
    assert stored["metadata"]["ensemble_steps"] == [100, 200]

    ensemble, tokenizer, features, _ = load_checkpoint(out)
    members = [load_checkpoint(p)[0] for p in three[:2]]
    assert isinstance(ensemble, Ensemble) and tokenizer.to_dict() == CharTokenizer().to_dict()
    feats, lengths = torch.randn(2, 40, N_MELS), torch.tensor([40, 25])
    with torch.no_grad():
        log_probs, out_lengths = ensemble(feats, lengths)
        expected = torch.stack([m(feats, lengths)[0].exp() for m in members]).mean(0).log()
    torch.testing.assert_close(log_probs, expected)
    assert out_lengths.tolist() == [10, 7]
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 10))  # still a distribution per frame
    assert not torch.allclose(log_probs, members[0](feats, lengths)[0])  # both members count


def test_ensemble_of_an_ensemble_flattens_and_half_halves(three, tmp_path):
    pair, trio = tmp_path / "pair.pt", tmp_path / "trio.pt"
    write_average(three[:2], pair, ensemble=True)
    write_average([pair, three[2]], trio, torch.float16, ensemble=True)
    stored = torch.load(trio, weights_only=True)
    assert len(stored["members"]) == 3
    assert {v.dtype for m in stored["members"] for v in m.values() if v.is_floating_point()} == {torch.float16}
    assert trio.stat().st_size < 0.6 * 1.5 * pair.stat().st_size
    assert len(load_checkpoint(trio)[0].members) == 3


def test_an_ensemble_is_not_averaged_or_fine_tuned(three, tmp_path):
    ens = tmp_path / "ens.pt"
    write_average(three[:2], ens, ensemble=True)
    with pytest.raises(InputError, match="ens.pt: is an ensemble of 2 models"):
        average_checkpoints([ens, three[2]])
    odd = _save(tmp_path / "odd.pt", seed=9, steps=900, preset="small")
    with pytest.raises(InputError, match="odd.pt: cannot be joined in an ensemble with .*model_config differs"):
        write_average([ens, odd], tmp_path / "x.pt", ensemble=True)
    apart = _save(tmp_path / "apart.pt", seed=9, steps=900,
                  features=FeatureExtractor(FeatureConfig(n_mels=N_MELS), mean=torch.zeros(N_MELS),
                                            std=torch.ones(N_MELS)))
    with pytest.raises(InputError, match="apart.pt: cannot be joined .*feature mean differs: the two were trained "
                                         "from different starts"):
        write_average([ens, apart], tmp_path / "x.pt", ensemble=True)

    import numpy as np
    import soundfile

    from asr.data import Utterance, write_manifest
    from asr.train import TrainConfig, train

    soundfile.write(tmp_path / "a.wav", np.zeros(8000, dtype=np.float32), 16000)
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [Utterance("a", str(tmp_path / "a.wav"), 0.5, "a", "s")])
    with pytest.raises(InputError, match="ens.pt: is an ensemble of 2 models; --init takes one model"):
        train(TrainConfig(train=[str(manifest)], out=str(tmp_path / "run"), init=str(ens), workers=0))


def test_a_checkpoint_without_weights_is_refused(three, tmp_path):
    state = torch.load(three[0], weights_only=True)
    del state["state_dict"]
    torch.save(state, tmp_path / "empty.pt")
    with pytest.raises(InputError, match="empty.pt: checkpoint holds no weights"):
        load_checkpoint(tmp_path / "empty.pt")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_an_ensemble_of_one_model_twice_transcribes_as_that_model(tiny_checkpoint, tmp_path, precision):
    import numpy as np

    from asr.model import int8_supported
    from asr.transcribe import Transcriber

    if precision == "int8" and not int8_supported():
        pytest.skip("no quantised CPU engine in this PyTorch build")
    twice = tmp_path / "twice.pt"
    write_average([tiny_checkpoint, tiny_checkpoint], twice, ensemble=True)
    audio = np.random.default_rng(1).standard_normal(3 * 16000).astype(np.float32) * 0.1
    one, two = (Transcriber.load(p, precision=precision) for p in (tiny_checkpoint, twice))
    assert isinstance(load_checkpoint(twice)[0], Ensemble)
    feats = one.features(audio)[None]
    lengths = torch.tensor([feats.shape[1]])
    with torch.no_grad():
        torch.testing.assert_close(two.model(feats, lengths)[0], one.model(feats, lengths)[0])
    assert two.transcribe(audio, 16000).text == one.transcribe(audio, 16000).text
