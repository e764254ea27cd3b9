"""One error tree for tvmopt: every user-facing failure is a TvmoptError with a one-line message.

The CLI prints `tvmopt: error: <message>` and exits with the error's `exit_code`; a traceback
is shown only with --verbose. Library users catch TvmoptError (or a subclass).
"""

from __future__ import annotations

import errno


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


class DataError(TvmoptError):
    """Input data of a batch-prediction job (npz/npy/Parquet) is missing, unreadable or does not fit
    the model; or the output directory holds another job."""


class MissingDependencyError(TvmoptError):
    """An optional dependency is not installed; the message says what to install."""


class UsageError(TvmoptError):
    """An option or argument is out of range (e.g. --repeat 0)."""


class PathError(TvmoptError):
    """A file or directory cannot be read or written (permissions, a file in the way, disk full)."""


# What to do about an OSError, by errno: the part of the message a user acts on.
_OS_HINTS = {
    errno.EACCES: "permission denied: check its permissions or choose another path",
    errno.EPERM: "operation not permitted: check its permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOSPC: "no space left on the device: free some space and run again",
    errno.EDQUOT: "disk quota exceeded: free some space and run again",
    errno.EFBIG: "file too large for this file system or process limit: free space or raise the limit",
    errno.ENOTDIR: "a part of the path is a file, not a directory: choose another path",
    errno.EISDIR: "it is a directory, not a file",
    errno.EEXIST: "it already exists",
    errno.ENOENT: "no such file or directory",
    errno.ENAMETOOLONG: "the path is too long",
}


def path_error(err: OSError, doing: str, path: object = None, cls: type[TvmoptError] = PathError) -> TvmoptError:
    """A one-line TvmoptError for an OSError: what was being done, on which path, and what to do."""
    where = path if path is not None else (err.filename or "")
    hint = _OS_HINTS.get(err.errno or 0, err.strerror or type(err).__name__)
    return cls(f"{where}: cannot {doing}: {hint}" if where else f"cannot {doing}: {hint}")


def last_line(err: BaseException, limit: int = 300) -> str:
    """The informative part of an exception: TVM and the frontends put the reason on the last
    non-empty line of a long multi-line message (a C++ backtrace comes first)."""
    return _line(err, -1, limit)


def first_line(err: BaseException, limit: int = 300) -> str:
    """The informative part of a Python-side exception (torch.export, onnx): the reason comes
    first, followed by pages of graph dumps and hints."""
    return _line(err, 0, limit)


def _line(err: BaseException, index: int, limit: int) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    message = lines[index] if lines else type(err).__name__
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
