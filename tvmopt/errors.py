"""One error tree for tvmopt: every user-facing failure is a TvmoptError with a one-line message.

The CLI prints `tvmopt: error: <message>` and exits with the error's `exit_code`; a traceback
is shown only with --verbose. Library users catch TvmoptError (or a subclass).
"""

from __future__ import annotations


class TvmoptError(Exception):
    """Base class: a problem with the user's input or environment, explained in one line."""

    exit_code = 2


class ModelImportError(TvmoptError):
    """The model file or module cannot be read or converted (which file, which node, why)."""


class UnsupportedOperatorError(ModelImportError):
    """The model uses operators that TVM's frontend cannot convert."""


class InputSpecError(TvmoptError):
    """An input name, shape or dtype does not match what the model declares."""


class TargetError(TvmoptError):
    """A target name, target file or target/host mismatch problem."""


class TuningError(TvmoptError):
    """A tuning session cannot start or continue (e.g. dynamic shapes, locked log)."""


class CompileError(TvmoptError):
    """Building the model for a target failed."""


class ArtifactError(TvmoptError):
    """A compiled artifact is missing, corrupt, or built for another target or TVM version."""


class QuantizeError(TvmoptError):
    """A model cannot be quantized as asked (mode, data, target), or the quantizer failed."""


class AccuracyError(QuantizeError):
    """The quantized model is less accurate than the user's threshold (--min-agreement)."""


class LogError(TvmoptError):
    """A tuning log (or an exported log file) is missing, corrupt or of another format."""


class RemoteError(TvmoptError):
    """The RPC tracker or the device cannot be reached, or the artifact failed there."""


class EmulationError(TvmoptError):
    """The emulated aarch64 environment cannot be prepared or the artifact failed in it."""


class MissingDependencyError(TvmoptError):
    """An optional dependency is not installed; the message says what to install."""


def last_line(err: BaseException, limit: int = 300) -> str:
    """The informative part of an exception: TVM and the frontends put the reason on the last
    non-empty line of a long multi-line message (a C++ backtrace comes first)."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    message = lines[-1] if lines else type(err).__name__
    return message if len(message) <= limit else message[: limit - 3] + "..."


def require(module: str, extra: str):
    """Import an optional dependency or raise MissingDependencyError with the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"this needs the Python package '{module}' ({err}); "
            f"install it with: pip install 'tvmopt[{extra}]'"
        ) from err
