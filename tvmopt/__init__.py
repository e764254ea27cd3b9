"""tvmopt: import a model, autotune it with TVM MetaSchedule, compile it per target, deploy it.

The verbs, in pipeline order:
    model = tvmopt.import_model("model.onnx")            # frontends
    log = tvmopt.tune(model, "host", budget="quick")     # tuning (MetaSchedule + XGBoost)
    artifact = tvmopt.compile(model, "host", "out/")      # compiler -> artifact dir
    predictor = tvmopt.load("out/")                       # runtime
"""

__version__ = "0.1.0"

from .errors import TvmoptError  # noqa: E402
from .frontends import import_model  # noqa: E402
from .model import Model, TensorSpec  # noqa: E402
from .targets import get_target, list_targets  # noqa: E402
from .tuning import tune  # noqa: E402
from .compiler import compile  # noqa: E402  (shadows the builtin on purpose: the verb)
from .runtime import load  # noqa: E402

__all__ = [
    "__version__",
    "TvmoptError",
    "import_model",
    "Model",
    "TensorSpec",
    "get_target",
    "list_targets",
    "tune",
    "compile",
    "load",
]
