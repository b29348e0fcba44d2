"""The BiLSTM stack as ONNX LSTM nodes with `sequence_lens`, for `asr export`.

`asr.model.BiLSTM` runs each layer as two one-directional LSTMs, the backward one over every utterance
reversed within its own length (gathers before and after). Exported as traced, that is two ONNX LSTM nodes
and four gathers a layer. ONNX's LSTM op does the same in one node: direction "bidirectional" with the
batch's lengths as `sequence_lens` starts the backward direction at each utterance's last frame and leaves
its padding out of both. `OnnxBiLSTM` stands in for a BiLSTM while the model is traced, and emits that node
through `torch.autograd.Function.symbolic` (the TorchScript exporter's way to give a module its own ONNX).

Dimensions: B batch, T frames, D input size, H hidden size per direction.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from asr.model import BiLSTM


def with_onnx_lstms(model: nn.Module) -> nn.Module:
    """A copy of `model` (in eval mode) with every BiLSTM replaced by an `OnnxBiLSTM` of the same weights."""
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, BiLSTM):
                setattr(parent, name, OnnxBiLSTM(child))
    return model


def _onnx_gates(weight: torch.Tensor) -> torch.Tensor:
    """PyTorch's gate blocks along dim 0 (input, forget, cell, output) in ONNX's order (input, output,
    forget, cell)."""
    i, f, g, o = weight.chunk(4, 0)
    return torch.cat([i, o, f, g], 0)


class OnnxBiLSTM(nn.Module):
    """A BiLSTM's weights in ONNX's layout, one `(W, R, B)` triple of buffers per layer: W (2, 4H, D) input
    weights, R (2, 4H, H) recurrent weights, B (2, 8H) both biases, forward direction first. Only for
    tracing: its forward pass yields the right shapes, not the right values; the exported graph is checked
    against the PyTorch model instead (`asr.export.check`)."""

    def __init__(self, bilstm: BiLSTM):
        super().__init__()
        self.num_layers = len(bilstm.layers)
        for k, layer in enumerate(bilstm.layers):
            directions = [layer["fwd"], layer["bwd"]]
            with torch.no_grad():
                self.register_buffer(f"w{k}", torch.stack([_onnx_gates(d.weight_ih_l0) for d in directions]))
                self.register_buffer(f"r{k}", torch.stack([_onnx_gates(d.weight_hh_l0) for d in directions]))
                self.register_buffer(f"b{k}", torch.stack([torch.cat([_onnx_gates(d.bias_ih_l0),
                                                                      _onnx_gates(d.bias_hh_l0)])
                                                           for d in directions]))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, keep: int | None = None):
        """As `BiLSTM.forward` without an intermediate layer: x (B, T, D) -> ((B, T, 2H), None)."""
        if keep is not None:
            raise ValueError("an exported model has no intermediate output")
        for k in range(self.num_layers):
            x = _BidirectionalLSTM.apply(x, lengths, getattr(self, f"w{k}"), getattr(self, f"r{k}"),
                                         getattr(self, f"b{k}"))
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]  # (B, T)
        return x * valid[:, :, None], None


class _BidirectionalLSTM(torch.autograd.Function):
    """One ONNX LSTM node, both directions, `sequence_lens` = lengths: (B, T, D) -> (B, T, 2H)."""

    @staticmethod
    def forward(ctx, x, lengths, w, r, b):  # noqa: ARG004 - the tracer needs the output's shape only
        return x.new_zeros(x.shape[0], x.shape[1], 2 * r.shape[2])

    @staticmethod
    def symbolic(g, x, lengths, w, r, b):
        hidden = w.type().sizes()[1] // 4  # the weights are constants: their shapes are known
        steps_first = g.op("Transpose", x, perm_i=[1, 0, 2])  # (T, B, D): the LSTM node's layout 0
        sequence_lens = g.op("Cast", lengths, to_i=6)  # int32, as the op requires
        y, _, _ = g.op("LSTM", steps_first, w, r, b, sequence_lens, hidden_size_i=hidden,
                       direction_s="bidirectional", outputs=3)  # y: (T, 2, B, H)
        y = g.op("Transpose", y, perm_i=[2, 0, 1, 3])  # (B, T, 2, H): forward then backward, as BiLSTM's cat
        return g.op("Reshape", y, g.op("Constant", value_t=torch.tensor([0, 0, -1])))  # (B, T, 2H)
