"""Small test models built in code with fixed seeds (nothing is downloaded).

Each builder returns `(module, example_inputs)`: an eval-mode torch.nn.Module and a tuple of
example tensors of the documented shape. Every model is small enough that an untuned TVM
compile + run takes a few seconds on a 2-core machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

SEED = 0


def _init(cls, seed: int = SEED) -> nn.Module:
    """cls() with weights drawn from `seed`, leaving torch's global RNG state as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls().eval()


# --------------------------------------------------------------------------- models


class SmallCNN(nn.Module):
    """conv(3->8) - relu - conv(8->16, stride 2) - relu - flatten - linear(16*8*8 -> 10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))


class MLP(nn.Module):
    """1x64 -> linear(128) -> relu -> linear(10)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class TinyTransformer(nn.Module):
    """nn.TransformerEncoder: 2 layers, d_model 32, 4 heads, ffn 64, batch_first, no dropout."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True
        )
        # enable_nested_tensor=False: the nested-tensor fast path is not traceable and warns.
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

    def forward(self, x):
        return self.encoder(x)


class EncoderLayer(nn.Module):
    """A post-norm transformer encoder layer written out with explicit reshapes and matmuls.

    Why not nn.TransformerEncoderLayer here: torch's legacy ONNX exporter bakes the traced
    sequence length into nn.MultiheadAttention's key/value reshapes (`k.view(k.shape[0], ...)`
    becomes the constant 8), so an export with a dynamic "seq" axis fails for any other length,
    in ONNX Runtime too. Spelling the attention out the way HF-style models do (sizes taken
    from the input) keeps both batch and sequence dims dynamic in the exported graph.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.nhead = nhead
        self.head_dim = d_model // nhead
        # Three projections, not one split with chunk(): the exporter turns chunk() into Slices
        # with computed bounds, which TVM's ONNX frontend cannot give static shapes.
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, dim_feedforward)
        self.ff2 = nn.Linear(dim_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x, additive_mask):
        """x [B, S, D]; additive_mask [B, 1, 1, S] (0 = attend, large negative = masked)."""
        batch, seq, d_model = x.shape[0], x.shape[1], x.shape[2]

        def heads(t):  # [B, S, D] -> [B, H, S, Dh]
            return t.reshape(batch, seq, self.nhead, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (self.head_dim**-0.5) + additive_mask
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)  # [B, H, S, Dh]
        ctx = ctx.transpose(1, 2).reshape(batch, seq, d_model)
        x = self.norm1(x + self.out(ctx))
        return self.norm2(x + self.ff2(torch.relu(self.ff1(x))))


class TokenClassifier(nn.Module):
    """Embedding(100, 32) + 1-layer transformer encoder (attention-mask input) + linear(5).

    forward(input_ids int64 [B, S], attention_mask int64 [B, S]) -> logits float32 [B, S, 5].
    The 0/1 attention mask becomes a float additive mask inside forward.
    """

    def __init__(self, vocab: int = 100, d_model: int = 32, nhead: int = 4, num_labels: int = 5):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.encoder = EncoderLayer(d_model, nhead, dim_feedforward=64)
        self.head = nn.Linear(d_model, num_labels)

    def forward(self, input_ids, attention_mask):
        x = self.embed(input_ids)
        # 1 = attend, 0 = padding -> 0.0 / -1e4 added to the attention scores of padded keys.
        additive = (1.0 - attention_mask.to(torch.float32)) * -10000.0  # [B, S]
        x = self.encoder(x, additive[:, None, None, :])
        return self.head(x)


class DepthwiseCNN(nn.Module):
    """pointwise(3->8) - depthwise 3x3 (groups=8) - relu - pointwise(8->4) - global avg pool."""

    def __init__(self):
        super().__init__()
        self.expand = nn.Conv2d(3, 8, 1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.project = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = torch.relu(self.depthwise(self.expand(x)))
        return self.project(x).mean(dim=(2, 3))


class MobileBlock(nn.Module):
    """MobileNet-style: stem conv(3->8, s2)+BN+ReLU6, depthwise 3x3+BN+ReLU6, pointwise(8->16)+BN,
    a grouped conv (2 groups)+ReLU, global average pool, linear(16 -> 10)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.depthwise = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.pointwise = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=2)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pointwise(self.depthwise(self.stem(x)))
        x = torch.relu(self.grouped(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class GRUModel(nn.Module):
    """nn.GRU(16 -> 32, batch_first) over 8 steps, then linear(32 -> 4) on every step."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(16, 32, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out)


class PadDecoder(nn.Module):
    """Encoder-decoder pieces: strided conv, instance norm, transposed conv, bilinear upsampling,
    concat and a reflect pad (the legacy exporter computes F.pad's pads from a constant subgraph)."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.norm = nn.InstanceNorm2d(8, affine=True)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.out = nn.Conv2d(7, 2, 3)

    def forward(self, x):
        h = torch.relu(self.norm(self.down(x)))
        resized = nn.functional.interpolate(h[:, :3], scale_factor=2, mode="bilinear", align_corners=False)
        merged = torch.cat([self.up(h), resized], 1)
        return self.out(nn.functional.pad(merged, (1, 1, 1, 1), mode="reflect"))


def _build(cls, *example_shapes, seed: int = SEED):
    module = _init(cls, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    inputs = tuple(torch.randn(*shape, generator=gen) for shape in example_shapes)
    return module, inputs


def small_cnn():
    """(SmallCNN, (x[1, 3, 16, 16],))"""
    return _build(SmallCNN, (1, 3, 16, 16))


def mlp():
    """(MLP, (x[1, 64],))"""
    return _build(MLP, (1, 64))


def tiny_transformer():
    """(TinyTransformer, (x[1, 8, 32],))"""
    return _build(TinyTransformer, (1, 8, 32))


def depthwise_cnn():
    """(DepthwiseCNN, (x[1, 3, 16, 16],))"""
    return _build(DepthwiseCNN, (1, 3, 16, 16))


def pad_decoder():
    """(PadDecoder, (x[1, 3, 16, 16],))"""
    return _build(PadDecoder, (1, 3, 16, 16))


def mobile_block():
    """(MobileBlock with non-trivial BN statistics, (x[1, 3, 32, 32],))"""
    module, inputs = _build(MobileBlock, (1, 3, 32, 32))
    gen = torch.Generator().manual_seed(SEED + 3)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return module, inputs


def gru_model():
    """(GRUModel, (x[1, 8, 16],))"""
    return _build(GRUModel, (1, 8, 16))


def token_inputs(batch: int = 1, seq: int = 8, pad: int = 0, seed: int = SEED):
    """(input_ids int64 [batch, seq] in [0, 100), attention_mask int64 with `pad` trailing 0s)."""
    gen = torch.Generator().manual_seed(seed + 2)
    ids = torch.randint(0, 100, (batch, seq), generator=gen, dtype=torch.int64)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    if pad:
        mask[:, seq - pad :] = 0
    return ids, mask


def token_classifier():
    """(TokenClassifier, (input_ids int64 [1, 8], attention_mask int64 [1, 8]))"""
    return _init(TokenClassifier), token_inputs(1, 8, pad=2)


# --------------------------------------------------------------------------- export


def export_onnx(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> Path:
    """Export with the legacy (TorchScript) exporter at opset 17; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Under no_grad an eval-mode nn.TransformerEncoderLayer takes its fused "fast path"
    # (aten::_transformer_encoder_layer_fwd), which has no ONNX symbolic; switch it off.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            torch.onnx.export(
                module.eval(),
                tuple(example_inputs),
                str(path),
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dict(dynamic_axes) if dynamic_axes else None,
                opset_version=17,
                dynamo=False,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return path
