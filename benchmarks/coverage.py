"""Import coverage: real architectures (random weights, nothing downloaded) through every path.

For each architecture: ONNX from torch's dynamo exporter, ONNX from the legacy (TorchScript)
exporter, and the PyTorch path (torch.export); each imported, compiled untuned for this CPU,
run, and compared with ONNX Runtime (ONNX paths) or PyTorch (torch path). The text models also
run one ONNX artifact with symbolic batch and sequence at several shapes. Each row runs in its
own process (memory, crashes, time limit). Writes benchmarks/results/coverage.json and the
"Import coverage" table of benchmarks/RESULTS.md.

    pip install -e '.[coverage]'      # transformers + the torchvision wheel matching torch 2.13
    nice python benchmarks/coverage.py [--models bert_base,gpt2] [--paths torch,onnx-legacy]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS_JSON = REPO / "benchmarks" / "results" / "coverage.json"
RESULTS_MD = REPO / "benchmarks" / "RESULTS.md"
PATHS = ("onnx-dynamo", "onnx-legacy", "torch", "onnx-dynamic")
DYNAMIC_SHAPES = [(1, 16), (4, 128), (2, 77)]  # batch x seq for the symbolic-dims artifact
TEXT_MODELS = ("bert_base", "distilbert", "gpt2")


def shim_torchvision() -> None:
    """Let `import torchvision` work beside the CPU torch.

    The PyPI torchvision 0.28 wheel links CUDA torch libraries, so its C ops (nms, roi_align,
    ...) fail to load beside torch 2.13's CPU build, and its import then dies registering a fake
    kernel for `torchvision::nms` ("operator torchvision::nms does not exist"); transformers
    imports torchvision when present, so it dies too. Classification and segmentation models
    use none of those ops: declaring the two schemas the import registers fakes for suffices.
    """
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018 - the real ops loaded
        return
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_TORCHVISION_SHIM"] = lib  # keep the library (and its definitions) alive


# --------------------------------------------------------------------------- architectures


@dataclass
class Arch:
    name: str
    description: str
    build: object  # () -> (torch module returning a tensor or tuple of tensors, {input name: tensor})


def _first(output):
    """A transformers ModelOutput / tuple -> its first tensor (logits, last_hidden_state)."""
    if isinstance(output, dict):
        return next(iter(output.values()))
    return output[0] if isinstance(output, (tuple, list)) else output


def _hf(model_factory, inputs_factory):
    def build():
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, **inputs):
                return _first(self.model(**inputs, return_dict=True))

        torch.manual_seed(0)
        return Wrapped(model_factory().eval()).eval(), inputs_factory()

    return build


def keep_signal(model) -> None:
    """Re-draw every conv and linear weight with He scaling (the caller seeds torch).

    torchvision's own init for some models shrinks the activations layer after layer until the
    output no longer depends on the input to float precision (googlenet: truncated normal, std
    0.01, logits equal to the classifier's bias; mobilenet_v3_small and efficientnet_b0 outputs
    of 1e-15 and 1e-20): every engine then returns the same numbers and a comparison checks
    nothing. With He scaling the activations keep their size through the depth."""
    import torch

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")


def _tv(factory_name: str, image: int = 224, **kwargs):
    def build():
        import torch

        shim_torchvision()
        import torchvision

        torch.manual_seed(0)
        factory = getattr(torchvision.models, factory_name, None) or getattr(
            torchvision.models.segmentation, factory_name
        )
        model = factory(weights=None, **kwargs).eval()
        keep_signal(model)

        class Out(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input):
                return _first(self.model(input))

        return Out(model).eval(), {"input": torch.randn(1, 3, image, image, generator=torch.Generator().manual_seed(1))}

    return build


def _tokens(seq: int = 128, vocab: int = 30522, batch: int = 1, mask: bool = True):
    import torch

    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    inputs = {"input_ids": ids}
    if mask:
        attention = torch.ones(batch, seq, dtype=torch.int64)
        attention[:, seq - seq // 8 :] = 0  # padding at the end
        inputs["attention_mask"] = attention
    return inputs


def _archs() -> dict[str, Arch]:
    shim_torchvision()
    import torch
    import transformers as tf

    def lstm_tagger():
        class Tagger(torch.nn.Module):
            """Embedding -> 2-layer bidirectional LSTM (batch_first) -> GRU -> per-token labels."""

            def __init__(self):
                super().__init__()
                self.embed = torch.nn.Embedding(5000, 128)
                self.lstm = torch.nn.LSTM(128, 256, num_layers=2, bidirectional=True, batch_first=True)
                self.gru = torch.nn.GRU(512, 128, batch_first=True)
                self.head = torch.nn.Linear(128, 9)

            def forward(self, input_ids):
                x, _ = self.lstm(self.embed(input_ids))
                x, _ = self.gru(x)
                return self.head(x)

        torch.manual_seed(0)
        return Tagger().eval(), _tokens(64, 5000, mask=False)

    rng = torch.Generator().manual_seed(1)
    entries = [
        Arch("resnet50", "torchvision resnet50, 1x3x224x224", _tv("resnet50")),
        Arch("mobilenet_v3_small", "torchvision mobilenet_v3_small, 1x3x224x224", _tv("mobilenet_v3_small")),
        Arch("efficientnet_b0", "torchvision efficientnet_b0, 1x3x224x224", _tv("efficientnet_b0")),
        Arch("convnext_tiny", "torchvision convnext_tiny, 1x3x224x224", _tv("convnext_tiny")),
        Arch("shufflenet_v2", "torchvision shufflenet_v2_x1_0, 1x3x224x224", _tv("shufflenet_v2_x1_0")),
        Arch("regnet_y_400mf", "torchvision regnet_y_400mf, 1x3x224x224", _tv("regnet_y_400mf")),
        Arch("deeplabv3_mnv3", "torchvision deeplabv3_mobilenet_v3_large (out), 1x3x224x224",
             _tv("deeplabv3_mobilenet_v3_large", weights_backbone=None, aux_loss=False)),
        Arch("vit_b_16", "torchvision vit_b_16, 1x3x224x224", _tv("vit_b_16")),
        Arch("bert_base", "transformers BertModel, bert-base config, 1x128 + mask",
             _hf(lambda: tf.BertModel(tf.BertConfig()), _tokens)),
        Arch("distilbert", "transformers DistilBertForSequenceClassification, base config, 1x128 + mask",
             _hf(lambda: tf.DistilBertForSequenceClassification(tf.DistilBertConfig()), _tokens)),
        Arch("gpt2", "transformers GPT2LMHeadModel, gpt2 (124M) config, no cache, 1x128 + mask",
             _hf(lambda: tf.GPT2LMHeadModel(tf.GPT2Config(use_cache=False)), lambda: _tokens(vocab=50257))),
        Arch("vit_hf", "transformers ViTForImageClassification, vit-base config, 1x3x224x224",
             _hf(lambda: tf.ViTForImageClassification(tf.ViTConfig()),
                 lambda: {"pixel_values": torch.randn(1, 3, 224, 224, generator=rng)})),
        Arch("whisper_tiny_encoder", "transformers Whisper encoder, whisper-tiny config, 1x80x3000 log-mel",
             _hf(lambda: tf.WhisperModel(tf.WhisperConfig(
                 d_model=384, encoder_layers=4, encoder_attention_heads=6, decoder_layers=4,
                 decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536)).get_encoder(),
                 lambda: {"input_features": torch.randn(1, 80, 3000, generator=rng)})),
        Arch("wav2vec2", "transformers Wav2Vec2Model, base config, 1x16000 samples",
             _hf(lambda: tf.Wav2Vec2Model(tf.Wav2Vec2Config()),
                 lambda: {"input_values": torch.randn(1, 16000, generator=rng)})),
        Arch("t5_small_encoder", "transformers T5EncoderModel, t5-small config, 1x128 + mask",
             _hf(lambda: tf.T5EncoderModel(tf.T5Config(d_model=512, d_ff=2048, num_layers=6, num_heads=8, d_kv=64)),
                 lambda: _tokens(vocab=32128))),
        Arch("lstm_tagger", "torch Embedding + 2-layer bidirectional LSTM + GRU tagger, 1x64 tokens",
             lstm_tagger),
    ]
    return {a.name: a for a in entries}


# --------------------------------------------------------------------------- one row


@dataclass
class Row:
    model: str
    path: str
    import_s: float | None = None
    compile_s: float | None = None
    run: bool = False
    max_diff: float | None = None
    reference: str = ""
    ok: bool = False
    reason: str = ""
    shapes: list = field(default_factory=list)


def _export_onnx(module, inputs: dict, path: Path, legacy: bool, dynamic: bool) -> None:
    import torch

    names = list(inputs)
    kwargs: dict = dict(input_names=names, output_names=["output"])
    if legacy:
        kwargs.update(opset_version=17, dynamo=False)
        if dynamic:
            kwargs["dynamic_axes"] = {n: {0: "batch", 1: "seq"} for n in names}
    else:
        kwargs.update(opset_version=18)
        if dynamic:
            batch, seq = torch.export.Dim("batch", max=64), torch.export.Dim("seq", max=512)
            kwargs["dynamic_shapes"] = {n: {0: batch, 1: seq} for n in names}
    with torch.no_grad():
        torch.onnx.export(module, (), str(path), kwargs=inputs, **kwargs)


def _close(got, want) -> tuple[float, bool]:
    import numpy as np

    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf"), False
    diff = float(np.abs(got - want).max()) if got.size else 0.0
    return diff, diff <= 1e-4 + 1e-3 * float(np.abs(want).max() if want.size else 0.0)


def run_row(model_name: str, path: str, work: Path) -> Row:
    import numpy as np

    row = Row(model_name, path)
    shim_torchvision()
    import torch

    import tvmopt

    arch = _archs()[model_name]
    module, inputs = arch.build()
    stage = "export"
    try:
        if path == "torch":
            row.reference = "torch"
            started = time.monotonic()
            stage = "import"
            model = tvmopt.import_model(module, example_inputs=inputs, name=model_name)
            row.import_s = round(time.monotonic() - started, 1)
            with torch.no_grad():
                want = [_first(module(**inputs)).numpy()]
            cases = [({k: v.numpy() for k, v in inputs.items()}, want)]
        else:
            import onnxruntime as ort

            row.reference = "onnxruntime"
            onnx_path = work / f"{model_name}.onnx"
            _export_onnx(module, inputs, onnx_path, legacy=path == "onnx-legacy", dynamic=path == "onnx-dynamic")
            stage = "import"
            started = time.monotonic()
            model = tvmopt.import_model(onnx_path, name=model_name)
            row.import_s = round(time.monotonic() - started, 1)
            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            if path == "onnx-dynamic":
                feeds = []
                for batch, seq in DYNAMIC_SHAPES:
                    shaped = _tokens(seq, int(inputs["input_ids"].max()) + 1, batch)
                    feeds.append({k: shaped[k].numpy() for k in inputs})
                row.shapes = [f"{b}x{s}" for b, s in DYNAMIC_SHAPES]
            else:
                feeds = [{k: v.numpy() for k, v in inputs.items()}]
            cases = [(feed, session.run(None, feed)) for feed in feeds]
        stage = "compile"
        started = time.monotonic()
        artifact = tvmopt.compile(model, "host", work / "artifact", log_root=None)
        row.compile_s = round(time.monotonic() - started, 1)
        stage = "run"
        predictor = tvmopt.load(artifact.path)
        diffs = []
        for feed, want in cases:
            got = predictor(**feed)
            row.run = True
            diff, ok = _close(got[0], want[0])
            diffs.append(diff)
            if not ok:
                row.reason = f"output differs from {row.reference} by {diff:.3g} at input shape " + \
                    "x".join(str(d) for d in next(iter(feed.values())).shape)
        row.max_diff = max(diffs)
        row.ok = not row.reason
    except Exception as err:  # noqa: BLE001 - the row reports it
        message = " ".join(str(err).split())
        row.reason = f"{stage}: {type(err).__name__}: {message[:400]}"
    return row


# --------------------------------------------------------------------------- table


def render(rows: list[Row]) -> str:
    def fmt(v, unit=""):
        return "-" if v is None else f"{v}{unit}"

    lines = [
        "| model | path | import | compile | run | max diff | vs | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        status = "ok" if r.ok else f"FAIL: {r.reason}"
        if r.ok and r.shapes:
            status = f"ok at batch x seq {', '.join(r.shapes)} (one artifact)"
        diff = "-" if r.max_diff is None else f"{r.max_diff:.1e}"
        lines.append(
            f"| {r.model} | {r.path} | {fmt(r.import_s, ' s')} | {fmt(r.compile_s, ' s')} | "
            f"{'yes' if r.run else 'no'} | {diff} | {r.reference} | {status.replace('|', '/')} |"
        )
    return "\n".join(lines)


BEGIN, END = "<!-- coverage:begin -->", "<!-- coverage:end -->"


def write_results_md(rows: list[Row], command: str) -> None:
    green = sum(r.ok for r in rows)
    body = (
        f"{BEGIN}\n`{command}` (untuned compile for this CPU; random He-scaled weights, `keep_signal`; a row is ok when "
        f"max |diff| <= 1e-4 + 1e-3 * max |reference|). {green} of {len(rows)} rows ok.\n\n"
        f"{render(rows)}\n{END}"
    )
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + body + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n## Import coverage\n\n" + body + "\n"
    RESULTS_MD.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated subset (default: all)")
    parser.add_argument("--paths", help=f"comma-separated subset of {','.join(PATHS)}")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per row")
    parser.add_argument("--row", nargs=2, metavar=("MODEL", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--resume", action="store_true", help="skip rows already ok in coverage.json")
    args = parser.parse_args(argv)

    if args.row:  # child process: one row
        with tempfile.TemporaryDirectory(prefix="tvmopt-coverage-") as tmp:
            try:
                row = run_row(args.row[0], args.row[1], Path(tmp))
            except Exception:  # noqa: BLE001
                row = Row(args.row[0], args.row[1], reason=traceback.format_exc().strip().splitlines()[-1])
        Path(args.out).write_text(json.dumps(asdict(row)))
        return 0

    names = args.models.split(",") if args.models else list(_archs())
    paths = args.paths.split(",") if args.paths else list(PATHS)
    rows: list[Row] = []
    previous = {}
    if RESULTS_JSON.exists() and (args.models or args.paths or args.resume):  # update the saved table
        previous = {(r["model"], r["path"]): Row(**r) for r in json.loads(RESULTS_JSON.read_text())}
    for name in names:
        for path in paths:
            if path == "onnx-dynamic" and name not in TEXT_MODELS:
                continue
            if args.resume and (name, path) in previous and previous[(name, path)].ok:
                continue
            started = time.monotonic()
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                try:
                    proc = subprocess.run(
                        [sys.executable, __file__, "--row", name, path, "--out", out.name],
                        capture_output=True, text=True, timeout=args.timeout, start_new_session=True,
                    )
                    data = Path(out.name).read_text()
                    row = Row(**json.loads(data)) if data else Row(
                        name, path, reason=f"crashed (exit {proc.returncode}): "
                        + " ".join((proc.stderr.strip().splitlines() or ["no output"])[-1].split())[:300])
                except subprocess.TimeoutExpired:
                    row = Row(name, path, reason=f"timed out after {args.timeout:.0f} s")
            rows.append(row)
            previous[(name, path)] = row
            print(f"{name:22s} {path:13s} {'ok ' if row.ok else 'FAIL'} {time.monotonic() - started:6.1f} s "
                  f"{'' if row.ok else row.reason[:200]}", flush=True)
            if not args.no_write:  # after every row: a long run that is stopped keeps what it measured
                _save(previous)
    print(render(rows))
    return 0 if all(r.ok for r in rows) else 1


def _save(rows_by_key: dict) -> None:
    everything = list(rows_by_key.values())
    order = {n: i for i, n in enumerate(_archs())}
    everything.sort(key=lambda r: (order.get(r.model, 99), PATHS.index(r.path) if r.path in PATHS else 9))
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps([asdict(r) for r in everything], indent=1) + "\n")
    write_results_md(everything, "nice python benchmarks/coverage.py")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
