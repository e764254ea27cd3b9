"""tvmopt: import a model, autotune it with TVM MetaSchedule, compile it per target, deploy it.

The verbs, in pipeline order:
    small = tvmopt.quantize("model.onnx", "model_int8.onnx")  # quantize (+ accuracy report)
    model = tvmopt.import_model("model.onnx")            # frontends
    log = tvmopt.tune(model, "host", budget="quick")     # tuning (MetaSchedule + XGBoost)
    artifact = tvmopt.compile(model, "host", "out/")      # compiler -> artifact dir
    predictor = tvmopt.load("out/")                       # runtime (needs no compiler)
    tvmopt.serve(["out/"], port=8000)                     # serving: Open Inference Protocol over HTTP
    tvmopt.predict("out/", "records.npz", "preds/")       # batch prediction, chunked and resumable

Attributes are imported on first use: `import tvmopt` is cheap, and `tvmopt.load` never
imports the compiler, torch or onnx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# One TVM thread per physical core unless the user set TVM_NUM_THREADS: TVM's own default is
# half the hardware threads on x86 (threads.py). Set before anything starts TVM's thread pool.
from .threads import configure as _configure_threads  # noqa: E402

_configure_threads()

# name -> (module, attribute)
_LAZY = {
    "import_model": ("tvmopt.frontends", "import_model"),
    "tune": ("tvmopt.tuning", "tune"),
    "compile": ("tvmopt.compiler", "compile"),  # shadows the builtin on purpose: the verb
    "load": ("tvmopt.runtime", "load"),
    "quantize": ("tvmopt.quantize", "quantize"),
    "run": ("tvmopt.runtime", "run"),
    "serve": ("tvmopt.serving.server", "serve"),  # needs tvmopt[serve]
    "predict": ("tvmopt.serving.batch_predict", "predict"),
    "Model": ("tvmopt.model", "Model"),
    "TensorSpec": ("tvmopt.specs", "TensorSpec"),
    "Predictor": ("tvmopt.runtime", "Predictor"),
    "TuningLog": ("tvmopt.tuning", "TuningLog"),
    "Artifact": ("tvmopt.runtime", "Artifact"),
    "get_target": ("tvmopt.targets", "get_target"),
    "list_targets": ("tvmopt.targets", "list_targets"),
    "TvmoptError": ("tvmopt.errors", "TvmoptError"),
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # the lazy names, for type checkers and IDEs
    from .compiler import compile  # noqa: F401
    from .errors import TvmoptError  # noqa: F401
    from .frontends import import_model  # noqa: F401
    from .model import Model  # noqa: F401
    from .quantize import quantize  # noqa: F401
    from .runtime import Artifact, Predictor, load, run  # noqa: F401
    from .serving.batch_predict import predict  # noqa: F401
    from .serving.server import serve  # noqa: F401
    from .specs import TensorSpec  # noqa: F401
    from .targets import get_target, list_targets  # noqa: F401
    from .tuning import TuningLog, tune  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tvmopt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
