"""File helpers every stage shares: hashes, atomic writes (temp file + rename), directories that
appear whole, and scratch directories a killed process cannot leak."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import glob
import hashlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from .errors import TvmoptError


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write via a temp file in the same directory + fsync + rename: readers never see half a file."""
    write_atomic_bytes(path, text.encode())


def write_atomic_bytes(path: str | os.PathLike, data: bytes) -> None:
    """write_atomic for bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; give what open() would
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_HELD: dict[tuple[int, int], threading.Lock] = {}  # (device, inode) of this process's ScratchDirs


class ScratchDir:
    """A private working directory `<parent>/<prefix><pid>-<random>` that a killed process cannot leak.

    Its owner holds an flock on the directory for as long as it uses it; creating one first
    removes the same-prefix directories whose owner is gone (lock free, and its pid dead or the
    directory over a minute old), so a `kill -9` leaves at most one run's leftovers behind.
    """

    def __init__(self, prefix: str, parent: str | os.PathLike | None = None):
        self.parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        self.prefix = prefix
        sweep_scratch(self.parent, prefix)
        self.path = Path(tempfile.mkdtemp(dir=self.parent, prefix=f"{prefix}{os.getpid()}-"))
        self._fd: int | None = os.open(self.path, os.O_RDONLY)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        stat = os.fstat(self._fd)
        self._key = (stat.st_dev, stat.st_ino)
        _HELD[self._key] = threading.Lock()

    def release(self, remove: bool = True) -> None:
        """Give up the directory; delete it unless it was moved to where it is needed (`remove=False`)."""
        if remove:
            if self.path.is_symlink():  # e.g. a symlinked artifact swapped out of its place
                self.path.unlink(missing_ok=True)
            else:
                shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            _HELD.pop(self._key, None)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        self.release()


def sweep_scratch(parent: Path, prefix: str) -> None:
    """Remove the ScratchDirs `parent/<prefix><pid>-*` of processes that died without cleaning up."""
    try:
        entries = list(parent.glob(glob.escape(prefix) + "*"))
    except OSError:
        return
    for path in entries:
        pid_text, dash, _ = path.name[len(prefix):].partition("-")
        if not (dash and pid_text.isdigit()) or int(pid_text) == os.getpid():
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its owner still works in it
        try:
            # Lock free: the owner is gone, unless it is still between mkdtemp and flock.
            if not pid_alive(int(pid_text)) or time.time() - os.fstat(fd).st_mtime > 60:
                shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this machine, in this pid namespace)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_dirs(path: str | os.PathLike, cls: "type[TvmoptError] | None" = None, hint: str = "choose another path") -> Path:
    """`mkdir -p path`, or a one-line error (of class `cls`) saying which part is in the way and why."""
    from .errors import PathError, path_error

    path, cls = Path(path), cls or PathError
    try:
        path.mkdir(parents=True, exist_ok=True)
        return path
    except OSError as err:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise cls(f"{path}: cannot create the directory: {blocker} is a file, not a directory; {hint}") from err
        raise path_error(err, "create the directory", path, cls) from err


@contextlib.contextmanager
def dir_lock(directory: str | os.PathLike) -> Iterator[None]:
    """An exclusive flock on a directory itself (no lock file left beside it).

    A ScratchDir of this process is already flocked through another descriptor, and flock
    conflicts between descriptors of one process too (an artifact written into a bench scratch
    directory waited on itself forever): there a thread lock stands in.
    """
    stat = os.stat(directory)
    held = _HELD.get((stat.st_dev, stat.st_ino))
    if held is not None:
        with held:
            yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def exchange_dirs(new: Path, old: Path) -> None:
    """Swap two directories' names in one atomic step (Linux renameat2 RENAME_EXCHANGE), so `old`'s
    path never stops existing; elsewhere two renames (a moment without `old`)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, rename_exchange = -100, 2
        if libc.renameat2(at_fdcwd, os.fsencode(new), at_fdcwd, os.fsencode(old), rename_exchange) == 0:
            return
    except (AttributeError, OSError):
        pass
    aside = old.with_name(f".{old.name}.swap-{os.getpid()}")
    os.rename(old, aside)
    os.rename(new, old)
    os.rename(aside, new)
