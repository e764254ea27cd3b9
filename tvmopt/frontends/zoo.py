"""The benchmark model zoo: standard architectures written in code, random weights from seed 0.

Nothing is downloaded. Each entry builds an eval-mode torch.nn.Module, makes seeded example
inputs (batch 1, static shapes) and exports ONNX (opset 17, legacy TorchScript exporter):

    resnet18     ResNet-18, input "input" 1x3x224x224 -> "logits" 1x1000
    mobilenetv2  MobileNetV2 (width 1.0), input "input" 1x3x224x224 -> "logits" 1x1000
    bert4        BERT-style encoder (4 layers, hidden 256, 4 heads, FFN 1024, seq 128),
                 "input_ids" + "attention_mask" int64 1x128 -> "last_hidden_state" 1x128x256
    mlp          512 -> 1024 -> 1024 -> 10 with ReLU, input "input" 1x512 -> "logits" 1x10

Weights are torch's default initialisation under torch.manual_seed(0). BatchNorm layers then
get random running statistics and affine parameters (seeded), so that BN folding is exercised
with values far from the identity 0/1. torch is imported lazily: `import tvmopt.zoo` works
without it; build(), example_inputs() and export_onnx() need it.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import TvmoptError, require

if TYPE_CHECKING:
    import torch

SEED = 0


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry; `build()` and `example_inputs()` are deterministic."""

    name: str
    description: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    factory: Callable[[], Any] = field(repr=False, compare=False)  # () -> nn.Module (train mode)
    make_inputs: Callable[[Any], tuple] = field(repr=False, compare=False)  # (torch.Generator) -> tensors

    def build(self) -> "torch.nn.Module":
        """The model in eval mode with seeded weights; torch's global RNG is left as it was."""
        torch = require("torch", "torch")

        with torch.random.fork_rng():
            torch.manual_seed(SEED)
            module = self.factory()
        _randomize_batchnorm(module, torch.Generator().manual_seed(SEED + 1))
        return module.eval()

    def example_inputs(self, seed: int = 0) -> tuple["torch.Tensor", ...]:
        """Batch-1 example inputs in the order of `input_names`, drawn from `seed`."""
        torch = require("torch", "torch")

        return self.make_inputs(torch.Generator().manual_seed(seed))

    def export_onnx(self, path: str | Path, dynamic_batch: bool = False) -> Path:
        """Export to ONNX at `path` (opset 17, legacy exporter, static shapes; with `dynamic_batch`,
        axis 0 of every input and output is the dynamic dim "batch", for batch buckets)."""
        torch = require("torch", "torch")

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # No nn.MultiheadAttention here, but keep the fused MHA fast path off like tests/models.py:
        # it has no ONNX symbolic.
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, on purpose
                torch.onnx.export(
                    self.build(),
                    self.example_inputs(),
                    str(path),
                    input_names=list(self.input_names),
                    output_names=list(self.output_names),
                    opset_version=17,
                    dynamo=False,
                    dynamic_axes={n: {0: "batch"} for n in (*self.input_names, *self.output_names)}
                    if dynamic_batch else None,
                )
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        return path


def _randomize_batchnorm(module, gen) -> None:
    """Non-trivial BN: running mean ~ N(0, 0.1), var ~ U(0.5, 1.5), gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1).

    The variance stays near 1 so that activations neither explode nor vanish over the depth of
    ResNet-18 / MobileNetV2 (outputs stay O(1), so a 1e-4 comparison means something).
    """
    import torch

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


# --------------------------------------------------------------------------- architectures


@functools.cache
def _arch():
    """The nn.Module classes, defined on first use so that importing this file needs no torch."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet18(nn.Module):
        def __init__(self, num_classes: int = 1000):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            layers, cin = [], 64
            for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
                layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
                cin = cout
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    def conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        return nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int):
            super().__init__()
            hidden = cin * expand
            self.use_residual = stride == 1 and cin == cout
            layers = [conv_bn_relu6(cin, hidden, 1)] if expand != 1 else []
            layers += [
                conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),  # depthwise
                nn.Conv2d(hidden, cout, 1, bias=False),  # linear bottleneck: no activation
                nn.BatchNorm2d(cout),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_residual else self.conv(x)

    class MobileNetV2(nn.Module):
        # (expansion t, channels c, repeats n, first stride s), width multiplier 1.0
        SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

        def __init__(self, num_classes: int = 1000):
            super().__init__()
            layers, cin = [conv_bn_relu6(3, 32, 3, 2)], 32
            for t, c, n, s in self.SETTINGS:
                for i in range(n):
                    layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            layers.append(conv_bn_relu6(cin, 1280, 1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

        def forward(self, x):
            x = self.features(x).mean(dim=(2, 3))  # global average pool
            return self.classifier(x)

    class BertLayer(nn.Module):
        """Post-norm encoder layer written out like Hugging Face BERT (separate q/k/v, explicit
        reshapes and matmuls): nn.MultiheadAttention's legacy ONNX export bakes the traced
        sequence length into its reshapes, and chunk()-split projections export as Slices with
        computed bounds that TVM's ONNX frontend cannot give static shapes."""

        def __init__(self, hidden: int, heads: int, ffn: int):
            super().__init__()
            self.heads, self.head_dim = heads, hidden // heads
            self.query = nn.Linear(hidden, hidden)
            self.key = nn.Linear(hidden, hidden)
            self.value = nn.Linear(hidden, hidden)
            self.attn_out = nn.Linear(hidden, hidden)
            self.attn_norm = nn.LayerNorm(hidden, eps=1e-12)
            self.intermediate = nn.Linear(hidden, ffn)
            self.output = nn.Linear(ffn, hidden)
            self.out_norm = nn.LayerNorm(hidden, eps=1e-12)
            self.gelu = nn.GELU()  # exact (erf) GELU, as in BERT

        def forward(self, x, additive_mask):
            """x [B, S, H]; additive_mask [B, 1, 1, S] (0 attend, -10000 padding)."""
            batch, seq, hidden = x.shape

            def split(t):  # [B, S, H] -> [B, heads, S, head_dim]
                return t.view(batch, seq, self.heads, self.head_dim).transpose(1, 2)

            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / (self.head_dim**0.5) + additive_mask
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
            ctx = ctx.transpose(1, 2).reshape(batch, seq, hidden)
            x = self.attn_norm(x + self.attn_out(ctx))
            return self.out_norm(x + self.output(self.gelu(self.intermediate(x))))

    class Bert(nn.Module):
        def __init__(self, vocab=30522, hidden=256, layers=4, heads=4, ffn=1024, max_positions=512):
            super().__init__()
            self.word_embeddings = nn.Embedding(vocab, hidden)
            self.position_embeddings = nn.Embedding(max_positions, hidden)
            self.token_type_embeddings = nn.Embedding(2, hidden)  # all segment 0
            self.embed_norm = nn.LayerNorm(hidden, eps=1e-12)
            self.layers = nn.ModuleList(BertLayer(hidden, heads, ffn) for _ in range(layers))

        def forward(self, input_ids, attention_mask):
            seq = input_ids.shape[1]
            x = (self.word_embeddings(input_ids) + self.position_embeddings.weight[:seq]
                 + self.token_type_embeddings.weight[0])
            x = self.embed_norm(x)
            # 1 = token, 0 = padding -> 0.0 / -10000.0 added to the attention scores of padded keys
            additive = (1.0 - attention_mask.to(x.dtype)) * -10000.0
            additive = additive[:, None, None, :]
            for layer in self.layers:
                x = layer(x, additive)
            return x  # last_hidden_state [B, S, hidden]

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
            )

        def forward(self, x):
            return self.net(x)

    return {"resnet18": ResNet18, "mobilenetv2": MobileNetV2, "bert4": Bert, "mlp": MLP}


def _image(gen):
    import torch

    return (torch.randn(1, 3, 224, 224, generator=gen),)


def _tokens(gen, seq: int = 128, vocab: int = 30522, pad: int = 16):
    import torch

    ids = torch.randint(0, vocab, (1, seq), generator=gen, dtype=torch.int64)
    mask = torch.ones(1, seq, dtype=torch.int64)
    mask[:, seq - pad :] = 0
    return ids, mask


def _vector(gen):
    import torch

    return (torch.randn(1, 512, generator=gen),)


def _entry(name: str, description: str, inputs: tuple[str, ...], outputs: tuple[str, ...], make_inputs) -> ZooModel:
    return ZooModel(name, description, inputs, outputs, lambda: _arch()[name](), make_inputs)


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in [
        _entry("resnet18", "ResNet-18 (BasicBlock [2,2,2,2], BatchNorm), 1x3x224x224 -> 1x1000 logits",
               ("input",), ("logits",), _image),
        _entry("mobilenetv2", "MobileNetV2 (width 1.0, ReLU6, BatchNorm), 1x3x224x224 -> 1x1000 logits",
               ("input",), ("logits",), _image),
        _entry("bert4", "BERT-style encoder: 4 layers, hidden 256, 4 heads, FFN 1024, vocab 30522, seq 128; "
               "input_ids + attention_mask (int64 1x128) -> last_hidden_state 1x128x256",
               ("input_ids", "attention_mask"), ("last_hidden_state",), _tokens),
        _entry("mlp", "MLP 512 -> 1024 -> 1024 -> 10 with ReLU, 1x512 -> 1x10 logits",
               ("input",), ("logits",), _vector),
    ]
}


def get(name: str) -> ZooModel:
    """The zoo entry called `name`; TvmoptError listing the known names otherwise."""
    try:
        return ZOO[name]
    except KeyError:
        raise TvmoptError(f"unknown zoo model '{name}'; known: {', '.join(ZOO)}") from None
