"""What vaelab may open, and how a file system's refusal becomes one clear line.

Two kinds of file are read:
- **run files** (config.json, metrics.jsonl, evaluation_*.json, pictures, weights) live inside a
  run directory, which may have come from someone else: they are opened with O_NOFOLLOW, so a
  symbolic link planted in a run is refused and never followed to a file outside it;
- **user files** (a --config file, a data file) are the user's own choice: links are followed,
  but only a regular file is read, so a FIFO or a device never blocks or feeds a read.

Every output (a checkpoint, a picture, report.html, `-o FILE`) is written to a temporary file
beside it and moved into place (`atomic_write` below); `check_output` refuses, before
that, a target that is a symbolic link or a special file (a device node, a FIFO, a socket), which
a rename would otherwise silently replace.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import VaelabError

_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def kind_of(mode: int) -> str:
    """'a FIFO (named pipe)', 'a folder', ... for a file that is not regular."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


_WHY = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "it does not exist",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "a name in the path is longer than the file system allows",
    errno.ELOOP: "it is a symbolic link (or a loop of them)",
    errno.ENXIO: "it is a special file with nothing behind it",
}

# Refusals that only the user can cure (permissions, space, names): the command line turns them
# into one line wherever they surface; every other OSError keeps its traceback.
USER_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP}
)


def why(e: OSError) -> str:
    return _WHY.get(e.errno or 0, e.strerror or str(e))


def read_error(path: str | Path, e: OSError, fix: str = "check the path and its permissions") -> VaelabError:
    return VaelabError(f"cannot read {path}: {why(e)}; {fix}")


def write_error(path: str | Path, e: OSError) -> VaelabError:
    fix = "free some space and run it again" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "choose another path"
    return VaelabError(f"cannot write {path}: {why(e)}; {fix} (anything already there is unchanged)")


def from_os_error(e: OSError) -> VaelabError:
    """One line for an OSError whose errno is in USER_ERRNOS (the command line's last resort)."""
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    where = " ".join(names) if names else "a file"
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return write_error(where, e)
    return VaelabError(f"cannot use {where}: {why(e)}; check the path and its permissions")


def _open_regular(path: Path, follow: bool) -> int:
    """An fd of `path` opened for reading, refusing links (follow=False) and anything but a
    regular file. O_NONBLOCK: opening a FIFO must not wait for a writer."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise VaelabError(f"{path} is {kind_of(mode)}, not a file vaelab can read; give a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: str | Path, *, in_run: bool, fix: str = "check the path and its permissions") -> bytes:
    """The bytes of a regular file. in_run=True: a file of a run directory, never through a
    symbolic link. Any refusal is a VaelabError naming the file."""
    path = Path(path)
    try:
        fd = _open_regular(path, follow=not in_run)
    except OSError as e:
        if e.errno == errno.ELOOP and in_run:
            raise VaelabError(
                f"{path} is a symbolic link; vaelab reads no link inside a run directory (it could point "
                "anywhere): replace it with the file itself"
            ) from None
        raise read_error(path, e, fix) from None
    try:
        with os.fdopen(fd, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise read_error(path, e, fix) from None


def read_text(path: str | Path, *, in_run: bool, fix: str = "check the path and its permissions") -> str:
    return read_bytes(path, in_run=in_run, fix=fix).decode("utf-8", errors="replace")


def require_regular(path: str | Path, what: str = "file") -> None:
    """Refuse, before any read, a data path that exists but is not a regular file (a FIFO would
    block the read forever, a device would feed it for ever)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise read_error(path, e) from None
    if not stat.S_ISREG(mode):
        raise VaelabError(f"{what} {path} is {kind_of(mode)}, not a regular file; give a regular file")


def check_output(path: str | Path) -> None:
    """A file vaelab is about to write (by a rename over it) must be new or a regular file: a
    symbolic link or a special file (/dev/null, a FIFO) is refused and left as it is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            return  # the write itself names this ("a part of the path is a file")
        raise write_error(path, e) from None
    if stat.S_ISLNK(st.st_mode):
        raise VaelabError(
            f"cannot write {path}: it is a symbolic link, and vaelab writes through no link (it could point "
            "anywhere); remove the link or choose another path"
        )
    if not stat.S_ISREG(st.st_mode):
        raise VaelabError(
            f"cannot write {path}: it is {kind_of(st.st_mode)}, not a regular file; choose a new file's path "
            "(it was left as it was)"
        )


def no_link(path: str | Path, what: str = "folder") -> None:
    """Refuse a folder inside a run that is a symbolic link (writing into it would write outside)."""
    if Path(path).is_symlink():
        raise VaelabError(
            f"{path} is a symbolic link; vaelab writes into no link inside a run directory: "
            f"replace it with a real {what} or remove it"
        )


def parse_json(text: str, path: str | Path, fix: str, at: str = ""):
    """json.loads, with damage (bad syntax, nesting too deep to parse) as one line naming `path`
    (and `at`, e.g. " at line 3")."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise VaelabError(f"{path} is damaged{at} ({e}); {fix}") from None
    except RecursionError:
        raise VaelabError(f"{path} is damaged{at} (nested too deeply to be vaelab's); {fix}") from None


# -- atomic writes ----------------------------------------------------------------------------

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then move tmp_path to path; remove tmp_path on any failure. A file
    system that refuses (a read-only folder, a full disk, a path through a file) is a VaelabError
    naming the path; whatever was at `path` before is left as it was."""
    atomic_write_all([(Path(path), write)])


def atomic_write_all(writes: list[tuple[Path, Callable[[str], None]]]) -> None:
    """Write several files as one: each goes to a temporary name in its folder first, and only
    once all are written are they moved into place (renames need no space), so a failure half-way,
    a full disk say, leaves the previous set whole and consistent."""
    for target, _ in writes:
        check_output(target)  # never a rename over a link, a device node or a FIFO
    done: list[tuple[str, Path]] = []
    path = None
    try:
        for path, write in writes:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            done.append((tmp, path))
            write(tmp)
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file a normal file's mode
        for tmp, target in done:
            os.replace(tmp, target)
    except OSError as e:
        for tmp, _ in done:
            Path(tmp).unlink(missing_ok=True)
        if e.errno is None:
            raise  # not the file system's answer (an OSError a library raised for something else)
        raise write_error(path or Path("."), e) from None
    except BaseException:
        for tmp, _ in done:
            Path(tmp).unlink(missing_ok=True)
        raise


def make_parent(path: str | Path) -> Path:
    """Create the folder a file will be written to; a VaelabError where the file system refuses."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None
    return path


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
