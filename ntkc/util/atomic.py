"""The one atomic file writer: readers see a whole new file or the old one, never a part; and
the one check that an output path can be written, made before the work that fills it.

A file is written to a uniquely named temporary in the same folder, fsynced, renamed over the
target, and the folder is fsynced; a failed write (a full disk, Ctrl-C) removes the temporary.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from ..errors import NtkcError


def check_writable(path: str | Path | None, flag: str) -> None:
    """Check, before any work, that `path` can be written at the end: not a folder, in a folder
    that exists (it is made now if missing) and can be written."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise NtkcError(f"{flag} {path} is a folder", hint=f"give {flag} a file name, e.g. {p / 'out'}")
    parent = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NtkcError(f"{flag} {path}: cannot make the folder {parent} ({err.strerror or err})",
                        hint="give a path in a folder you can write") from None
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise NtkcError(f"{flag} {path} cannot be written (no permission)", hint="give a path you can write")


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_file(path) as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_file(path: str | Path):
    """A binary file object whose contents replace `path` when the block ends without error."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with _FdWriter(fd) as f:
            yield f
            os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(path.parent)


class _FdWriter(io.RawIOBase):
    """A writable file over a descriptor; every write goes through `_write` (tests replace it
    to simulate a full disk)."""

    def __init__(self, fd: int):
        self.fd = fd

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            n = _write(self.fd, view)
            view = view[n:]
        return total

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self.fd)
            finally:
                super().close()


def _write(fd: int, view: memoryview) -> int:
    """One os.write (its own function so that tests can simulate a full disk)."""
    return os.write(fd, view)


def _fsync_folder(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename itself is atomic
