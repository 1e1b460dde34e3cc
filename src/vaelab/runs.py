"""Run-directory policy shared by every command that writes into one.

One process at a time may write a directory that training or a reproduction owns: `exclusive`
takes an advisory lock (flock) on DIR/.lock for the life of the block. The operating system
releases it when the process dies, however it dies, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path

from .errors import VaelabError

LOCK = ".lock"


@contextmanager
def exclusive(directory: str | Path, what: str = "run"):
    """Hold the lock of `directory` (which must exist) inside the block; a second holder is
    refused at once with a line naming the process that has it."""
    import fcntl
    directory = Path(directory)
    path = directory / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise VaelabError(f"cannot write in {directory} ({e.strerror}); choose a folder you can write to") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise VaelabError(f"{directory} is in use by another vaelab process ({holder}); wait for it to "
                              f"finish or stop it, then run this again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({what})\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
