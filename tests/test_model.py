import pytest
import torch

from asr.model import (
    PRESETS,
    Model,
    ModelConfig,
    count_parameters,
    load_checkpoint,
    output_lengths,
    preset_config,
    read_checkpoint,
    save_checkpoint,
)


def _model(**overrides) -> Model:
    torch.manual_seed(0)
    config = ModelConfig(**{**vars(PRESETS["tiny"]), "num_layers": 2, "vocab_size": 29, **overrides})
    return Model(config).eval()


def test_output_lengths_match_the_network():
    model = _model()
    for t in [1, 2, 3, 4, 5, 7, 8, 9, 100, 101]:
        log_probs, lengths = model(torch.randn(1, t, 80), torch.tensor([t]))
        assert log_probs.shape[1] == lengths.item() == output_lengths(torch.tensor(t)).item()


def test_log_probs_are_normalised():
    log_probs, _ = _model()(torch.randn(2, 50, 80), torch.tensor([50, 30]))
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 13), atol=1e-5)


def test_padded_batch_equals_each_utterance_alone():
    model = _model()
    lengths = [37, 80, 5, 61]
    utts = [torch.randn(t, 80) for t in lengths]
    batch = torch.zeros(len(utts), max(lengths), 80)
    batch[:] = 7.0  # garbage in the padding must not matter
    for i, u in enumerate(utts):
        batch[i, : len(u)] = u
    with torch.no_grad():
        batched, out_lengths = model(batch, torch.tensor(lengths))
        for i, u in enumerate(utts):
            alone, alone_len = model(u.unsqueeze(0), torch.tensor([len(u)]))
            n = alone_len.item()
            assert out_lengths[i].item() == n
            torch.testing.assert_close(batched[i, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_bilstm_equals_a_packed_bidirectional_nn_lstm_and_loads_its_weights():
    """The unpacked BiLSTM computes what nn.LSTM(bidirectional) over a packed batch does, and version-1
    checkpoints (that module's weight names) load into it."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from asr.model import BiLSTM

    torch.manual_seed(0)
    reference = torch.nn.LSTM(6, 5, num_layers=3, bidirectional=True, batch_first=True).eval()
    ours = BiLSTM(6, 5, num_layers=3, dropout=0.2).eval()
    ours.load_state_dict(reference.state_dict())
    lengths = torch.tensor([9, 4, 1, 7])
    x = torch.randn(4, 9, 6)
    with torch.no_grad():
        expected, _ = reference(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        expected, _ = pad_packed_sequence(expected, batch_first=True, total_length=9)
        torch.testing.assert_close(ours(x, lengths)[0], expected, atol=1e-6, rtol=1e-5)  # zeros in the padding too


def test_presets_and_parameter_counts():
    assert {"tiny", "small", "medium", "base", "large"} <= set(PRESETS)
    counts = [count_parameters(preset_config(name, 29)) for name in ["tiny", "small", "medium", "base", "large"]]
    assert counts == sorted(counts)
    assert counts[0] == sum(p.numel() for p in Model(preset_config("tiny", 29)).parameters())


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    from asr.audio import FeatureExtractor
    from asr.text import CharTokenizer

    model, tok, feats = _model(), CharTokenizer(), FeatureExtractor(mean=torch.zeros(80), std=torch.ones(80))
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, tok, feats, {"note": "x"})
    state = torch.load(path, weights_only=True)  # must not need pickled code
    assert state["metadata"] == {"note": "x"}
    loaded, tok2, feats2, meta = load_checkpoint(path)
    x = torch.randn(1, 40, 80)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, torch.tensor([40]))[0], model(x, torch.tensor([40]))[0])
    assert tok2.tokens == tok.tokens and meta["note"] == "x"
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_failed_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    """A disk that fills up halfway through torch.save: one-line error, the old checkpoint still loads."""
    import errno

    from asr.audio import FeatureExtractor
    from asr.errors import InputError
    from asr.text import CharTokenizer

    model, tok, feats = _model(), CharTokenizer(), FeatureExtractor(mean=torch.zeros(80), std=torch.ones(80))
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, tok, feats, {"step": 1})
    real_save = torch.save

    def save_half_then_fail(obj, f):
        real_save(obj, f)
        f.truncate(f.tell() // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(InputError, match="last.pt: could not write it"):
        save_checkpoint(path, model, tok, feats, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)[3] == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_bad_checkpoints_are_refused(tmp_path):
    import pytest

    from asr.errors import InputError

    with pytest.raises(InputError, match="no such model file"):
        read_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pt"):
        read_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(InputError, match="not an asr checkpoint"):
        read_checkpoint(foreign)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path, capsys):
    import pytest

    from asr.errors import InputError

    evil = tmp_path / "evil.pt"
    torch.save({"format": "asr-bilstm-ctc", "payload": _Payload()}, evil)
    with pytest.raises(InputError, match="evil.pt"):
        read_checkpoint(evil)
    assert "this must never run" not in capsys.readouterr().out


def test_intermediate_output_reads_the_chosen_layer_through_the_output_layer():
    torch.manual_seed(0)
    model = Model(preset_config("small", 29)).eval()
    feats, lengths = torch.randn(2, 50, 80), torch.tensor([50, 31])
    with torch.no_grad():
        log_probs, out_lengths = model(feats, lengths)
        again, same_lengths, inner = model(feats, lengths, intermediate=2)
    torch.testing.assert_close(again, log_probs)
    assert torch.equal(same_lengths, out_lengths) and inner.shape == log_probs.shape
    torch.testing.assert_close(inner.exp().sum(-1), torch.ones(2, inner.shape[1]))
    # Its loss reaches the layers up to the chosen one and the output layer, not the layers above.
    model.train()
    _, _, inner = model(feats, lengths, intermediate=1)
    inner.sum().backward()
    layers = model.lstm.layers
    assert layers[0]["fwd"].weight_ih_l0.grad.abs().sum() > 0 and model.out.weight.grad.abs().sum() > 0
    assert layers[1]["fwd"].weight_ih_l0.grad is None and layers[2]["bwd"].weight_hh_l0.grad is None
    with pytest.raises(ValueError, match="intermediate layer must be in 1..2"):
        model(feats, lengths, intermediate=3)


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_resolve_device_names_the_device_and_what_there_is():
    """`--device cuda` without a GPU ended in a 30-line traceback (issue 30)."""
    from asr.errors import InputError
    from asr.model import available_devices, resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto", allow_auto=True).type == ("cuda" if torch.cuda.is_available() else "cpu")
    missing = ["gpu", "cuda:99", "nonsense", "auto"] + ([] if torch.cuda.is_available() else ["cuda"])
    for name in missing:
        with pytest.raises(InputError) as e:
            resolve_device(name)
        message = str(e.value)
        assert name in message and ", ".join(available_devices()) in message and "\n" not in message


def test_load_checkpoint_refuses_a_device_this_machine_lacks(tiny_checkpoint):
    from asr.errors import InputError

    with pytest.raises(InputError, match="device cuda:99: not available on this machine, which has cpu"):
        load_checkpoint(tiny_checkpoint, "cuda:99")


def test_unloadable_checkpoint_says_what_is_wrong(tmp_path, tiny_checkpoint):
    """A text file was 'not a loadable checkpoint (101)': the bare pickle opcode torch reported (issue 30)."""
    from asr.errors import InputError

    (tmp_path / "text.pt").write_text("hello world\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    whole = tiny_checkpoint.read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    expected = {"text.pt": "it is no PyTorch file (it begins with b'hell'", "empty.pt": "the file is empty",
                "cut.pt": "the PyTorch file is damaged or cut short"}
    for name, reason in expected.items():
        with pytest.raises(InputError) as e:
            read_checkpoint(tmp_path / name)
        assert str(e.value).startswith(f"{tmp_path / name}: not a loadable checkpoint: {reason}")
        assert "(101)" not in str(e.value) and "\n" not in str(e.value)


def test_set_threads_leaves_the_cores_of_other_work(monkeypatch, keep_threads):
    """torch's default takes every core: with workers beside it, that oversubscribes them (issue 30)."""
    import asr.model
    from asr.errors import InputError
    from asr.model import set_threads

    monkeypatch.setattr(asr.model, "available_cores", lambda: 4)
    assert set_threads(busy=1) == 3 and torch.get_num_threads() == 3
    assert set_threads(busy=9) == 1
    assert set_threads(2, busy=3) == 2 and torch.get_num_threads() == 2
    with pytest.raises(InputError, match="--threads must be at least 1, got 0"):
        set_threads(0)
