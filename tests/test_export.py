"""asr export: the ONNX encoder gives PyTorch's log-probs (on real speech, batched and alone), the folder holds
everything the runtime reads, every preset exports, and bad targets are refused in one line."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from asr.audio import load_audio
from asr.cli import main
from asr.export import export, export_model
from asr.model import PRESETS, Model, load_checkpoint, preset_config
from asr.runtime import bundle
from asr.runtime.encoder import Encoder
from asr.transcribe import pad_batch

REPO = Path(__file__).resolve().parents[1]
AN4_EXAMPLES = sorted((REPO / "examples").glob("an4-*.wav"))


@pytest.fixture(scope="module")
def an4():
    return load_checkpoint(REPO / "models" / "an4" / "model.pt")


def test_onnx_log_probs_equal_pytorch_on_real_speech(an4, an4_export):
    model, _, features, _ = an4
    encoder = Encoder(an4_export / bundle.ENCODER, threads=1)
    feats = [features(load_audio(path)) for path in AN4_EXAMPLES]
    with torch.inference_mode():
        for f in feats:  # each utterance alone
            expected, expected_lengths = model(f[None], torch.tensor([f.shape[0]]))
            log_probs, lengths = encoder(f[None].numpy(), np.array([f.shape[0]]))
            assert lengths.tolist() == expected_lengths.tolist()
            assert np.abs(log_probs - expected.numpy()).max() <= 1e-4
        padded, lengths = pad_batch(feats)  # and as one padded batch, as transcription runs them
        expected, expected_lengths = model(padded, lengths)
    batch, out_lengths = encoder(padded.numpy(), lengths.numpy())
    assert out_lengths.tolist() == expected_lengths.tolist()
    for i, (f, n) in enumerate(zip(feats, out_lengths.tolist(), strict=True)):
        alone, _ = encoder(f[None].numpy(), np.array([f.shape[0]]))
        assert np.abs(batch[i, :n] - alone[0]).max() <= 1e-5  # the padding changes nothing
        assert np.abs(batch[i, :n] - expected[i, :n].numpy()).max() <= 1e-4


def test_the_folder_holds_what_the_runtime_needs(an4, an4_export):
    _, tokenizer, features, metadata = an4
    exported = bundle.read(an4_export)
    assert exported.precision == "fp32" and exported.subsampling == 4
    assert exported.features == features.config
    np.testing.assert_array_equal(exported.mel, features._mel.numpy())
    np.testing.assert_array_equal(exported.mean, features.mean.numpy())
    np.testing.assert_array_equal(exported.std, features.std.numpy())
    assert exported.tokenizer.tokens == tokenizer.tokens
    # the decoder settings, with the LM copied in and named relative to the folder
    stored = metadata["decoder"]
    assert exported.decoder["lm"] == Path(stored["lm"]).name
    assert (an4_export / exported.decoder["lm"]).read_bytes() == (REPO / "models" / "an4" / stored["lm"]).read_bytes()
    assert {k: v for k, v in exported.decoder.items() if k not in ("lm", "hotwords")} == \
        {k: v for k, v in stored.items() if k not in ("lm", "hotwords")}
    description = json.loads((an4_export / bundle.MANIFEST).read_text())
    assert description["source"]["sha256"] == hashlib.sha256((REPO / "models/an4/model.pt").read_bytes()).hexdigest()
    assert description["encoder"]["max_abs_difference_from_pytorch"] <= 1e-4


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_exports(preset, tmp_path):
    """Random weights; the export's own check runs a padded batch through ONNX and PyTorch (short inputs, so the
    large preset stays cheap) and refuses to write a folder whose log-probs differ."""
    from asr.audio import FeatureExtractor
    from asr.text import CharTokenizer

    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    net = Model(preset_config(preset, tokenizer.vocab_size)).eval()
    description = export_model(net, tokenizer, FeatureExtractor(), {}, tmp_path / preset, check_lengths=(13, 6))
    assert description["encoder"]["max_abs_difference_from_pytorch"] <= 1e-4
    exported = bundle.read(tmp_path / preset)
    assert exported.mean is None and exported.tokenizer.tokens == tokenizer.tokens
    assert description["model_config"]["hidden_size"] == PRESETS[preset].hidden_size
    # Each BiLSTM layer is one bidirectional LSTM node over the batch's lengths (asr.onnx_lstm), with no
    # gathers reversing the batch around it.
    import onnx

    nodes = onnx.load(tmp_path / preset / bundle.ENCODER).graph.node
    lstms = [n for n in nodes if n.op_type == "LSTM"]
    assert len(lstms) == PRESETS[preset].num_layers
    assert all(len(n.input) == 5 and n.input[4] for n in lstms)  # X, W, R, B, sequence_lens
    assert all(onnx.helper.get_attribute_value(a) == b"bidirectional" for n in lstms for a in n.attribute
               if a.name == "direction")
    assert not any(n.op_type == "GatherElements" for n in nodes)


def test_a_bpe_model_exports_its_sentencepiece_model(tmp_path):
    from asr.audio import FeatureExtractor
    from asr.text import BPETokenizer

    tokenizer = BPETokenizer.train(["the cat sat on the mat", "a dog ate the hat", "pittsburgh erase forty"] * 20, 30)
    net = Model(preset_config("tiny", tokenizer.vocab_size)).eval()
    export_model(net, tokenizer, FeatureExtractor(), {}, tmp_path / "bpe", check_lengths=(9,))
    exported = bundle.read(tmp_path / "bpe")
    assert (tmp_path / "bpe" / bundle.SENTENCEPIECE).read_bytes() == tokenizer.model_proto
    assert exported.tokenizer.tokens == tokenizer.tokens
    assert exported.tokenizer.decode(tokenizer.encode("the cat ate")) == "the cat ate"


def test_export_refuses_bad_targets_in_one_line(tiny_checkpoint, tmp_path, capsys):
    assert main(["export", "--model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.pt" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["export", "--model", str(tiny_checkpoint), "--out", str(other)]) == 1
    assert "holds no export" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"

    out = tmp_path / "tiny"
    assert main(["export", "--model", str(tiny_checkpoint), "--out", str(out)]) == 0
    assert "fp32 encoder" in capsys.readouterr().out
    assert main(["export", "--model", str(tiny_checkpoint), "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    before = (out / bundle.MANIFEST).read_text()
    export(tiny_checkpoint, out, int8=True, overwrite=True)
    assert bundle.read(out).precision == "int8" and (out / bundle.MANIFEST).read_text() != before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary folder left
