"""A depthwise conv fused into the 1x1 conv after it (compiler/dwpw.py): which pairs fuse, that the
fused kernel computes what ONNX Runtime computes (strides, batches, with and without the bias and
ReLU6 between them, a residual add after), untuned and through its template after real trials,
and that it can be switched off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import tvmopt
from conftest import ort_run
from torch import nn
from tvmopt.compiler import GraphOptions
from tvmopt.compiler.inspect import describe
from tvmopt.targets import get_target
from tvmopt.tuning import make_budget


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand 1x1 + BN + ReLU6, depthwise 3x3 (`stride`) + BN + ReLU6 (or
    nothing between the convs, `plain`), project 1x1 + BN, the input added when the shape allows."""

    def __init__(self, channels: int, out_channels: int, stride: int, plain: bool = False):
        super().__init__()
        hidden = channels * 6
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6())
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=not plain)
        self.between = nn.Identity() if plain else nn.Sequential(nn.BatchNorm2d(hidden), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.residual = stride == 1 and channels == out_channels

    def forward(self, x):
        y = self.project(self.between(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class SharedDepthwise(nn.Module):
    """The depthwise output also feeds a second branch: fusing would compute it twice, so it stays."""

    def __init__(self):
        super().__init__()
        self.depthwise = nn.Conv2d(32, 32, 3, 1, 1, groups=32)
        self.project = nn.Conv2d(32, 16, 1)

    def forward(self, x):
        d = torch.clamp(self.depthwise(x), 0, 6)
        return self.project(d), d.mean(dim=(2, 3))


def _export(module: nn.Module, shape, tmp: Path) -> tuple[Path, np.ndarray]:
    import models

    torch.manual_seed(0)
    module = module.eval()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    x = torch.randn(*shape)
    outputs = ["y"] if not isinstance(module, SharedDepthwise) else ["y", "pooled"]
    return models.export_onnx(module, (x,), tmp / "block.onnx", ["x"], outputs), x.numpy()


def _fused(model, target: str = "x86-avx512", options: GraphOptions | None = None) -> int:
    return sum(k.calls for k in describe(model, get_target(target).tvm_target(), options).kernels
               if "depthwise_pointwise" in k.name)


@pytest.mark.parametrize("block, shape", [
    (InvertedResidual(16, 16, 1), (1, 16, 28, 28)),             # + residual
    (InvertedResidual(16, 24, 2), (2, 16, 30, 29)),             # stride 2, a batch, odd width
    (InvertedResidual(8, 16, 1, plain=True), (1, 8, 14, 14)),   # no bias or clip between the convs
])
def test_fused_block_matches_onnxruntime_untuned(block, shape, tmp_path):
    path, x = _export(block, shape, tmp_path)
    model = tvmopt.import_model(path)
    assert _fused(model) == 1
    artifact = tvmopt.compile(model, "x86-avx512", tmp_path / "art", log_root=None)
    np.testing.assert_allclose(tvmopt.load(artifact.path)(x)[0], ort_run(path, {"x": x})[0], atol=1e-4, rtol=1e-4)


def test_a_depthwise_output_read_twice_is_not_fused(tmp_path):
    path, x = _export(SharedDepthwise(), (1, 32, 16, 16), tmp_path)
    model = tvmopt.import_model(path)
    assert _fused(model) == 0
    artifact = tvmopt.compile(model, "x86-avx512", tmp_path / "art", log_root=None)
    for ours, theirs in zip(tvmopt.load(artifact.path)(x), ort_run(path, {"x": x})):
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_small_maps_and_switched_off_stay_two_kernels(tmp_path):
    """7 output rows: the fused kernel's parallel loop over rows would leave a thread idle."""
    small, _ = _export(InvertedResidual(16, 16, 1), (1, 16, 7, 7), tmp_path)
    assert _fused(tvmopt.import_model(small)) == 0
    big = tmp_path / "big"
    big.mkdir()
    path, _ = _export(InvertedResidual(16, 16, 1), (1, 16, 28, 28), big)
    model = tvmopt.import_model(path)
    assert _fused(model, options=GraphOptions(depthwise_pointwise=False)) == 0
    assert _fused(model, options=GraphOptions.none()) == 0


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2"])
def test_tuned_fused_kernel_matches_onnxruntime(target, tmp_path):
    """The template (a depthwise row per output row, then the 1x1 conv's register tiles) after
    two real trials, on both block sizes (16 and 8 floats)."""
    path, x = _export(InvertedResidual(16, 24, 2), (1, 16, 30, 30), tmp_path)
    model = tvmopt.import_model(path)
    log = tvmopt.tune(model, target, budget=make_budget("smoke", trials_per_task=2), log_root=tmp_path / "logs",
                      progress=False)
    assert log.trials_run > 0
    artifact = tvmopt.compile(model, target, tmp_path / "art", log_root=tmp_path / "logs")
    applied = [r.task for r in artifact.manifest.tuning.records_applied]
    assert any("depthwise_pointwise" in task for task in applied), applied
    np.testing.assert_allclose(tvmopt.load(artifact.path)(x)[0], ort_run(path, {"x": x})[0], atol=1e-4, rtol=1e-4)
