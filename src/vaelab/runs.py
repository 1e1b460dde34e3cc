"""Run-directory policy: every rule about creating, continuing, replacing, locking and cleaning
a run directory lives here.

- One training process per directory: `exclusive` holds an advisory lock (flock) on DIR/.lock
  for the life of the training; a second process is refused at once, and the operating system
  releases the lock when the holder dies, however it dies.
- A new run trains in DIR from the start; if it fails before its first checkpoint, what it wrote
  is removed, so the same command can simply be run again.
- `--overwrite` never destroys the old run before the new one has something to show: the new run
  trains in a staging directory beside DIR and is swapped into place (one atomic rename exchange
  on Linux) when its first checkpoint is written; a failure before that leaves the old run as it
  was. The swap replaces the whole directory, so nothing of the old run (evaluations, pictures,
  report, TensorBoard files) is ever shown as the new run's.
- `--resume` of a run that stopped before its first checkpoint starts it from the beginning with
  its saved settings (there is nothing else to continue from).
- Temporary files of a write that was killed are removed when the run next starts.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import checkpoint as ckpt
from .errors import VaelabError
from .safefs import atomic_write_text

if TYPE_CHECKING:
    from .config import Config
    from .model import VAE

LOCK = ".lock"
STAGING = ".overwrite-"  # .<name>.overwrite-<pid>: a new run waiting to replace <name>


def has_checkpoint(run: Path) -> bool:
    return (Path(run) / ckpt.RESUME).is_file()


def is_run(run: Path) -> bool:
    return (Path(run) / ckpt.CONFIG).is_file()


def _entries(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name != LOCK]


def _holder(fd: int) -> str:
    return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"


def _lock(directory: Path, what: str) -> int:
    """Take DIR/.lock (an open fd that holds it), or raise a VaelabError naming the holder."""
    import fcntl

    path = directory / LOCK
    try:
        # O_NOFOLLOW: a .lock planted as a link is refused, never truncated through to its target
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise VaelabError(
                f"{path} is a symbolic link; vaelab follows no link inside a run directory: remove it "
                "(no vaelab process holds a link as its lock)"
            ) from None
        raise VaelabError(f"cannot write in {directory} ({e.strerror}); choose a folder you can write to") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise VaelabError(f"{path} is not a regular file; remove it (vaelab's lock is an ordinary empty file)")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _holder(fd)
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        raise VaelabError(
            f"{directory} is in use by another vaelab process ({holder}); wait for it to finish "
            "or stop it, then run this again"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({what})\n".encode(), 0)
    except OSError as e:  # a full disk: the lock is held all the same; only its note is missing
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            os.close(fd)
            raise
    return fd


def _unlock(fd: int) -> None:
    import fcntl

    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def exclusive(directory: str | Path, what: str = "run") -> Iterator[None]:
    """Hold the lock of `directory` (which must exist) inside the block."""
    fd = _lock(Path(directory), what)
    try:
        yield
    finally:
        _unlock(fd)


def remove_temporary_files(run: Path) -> None:
    """Leftovers of atomic writes that were killed half-way (safefs.atomic_write's names)."""
    for p in run.glob(".*.tmp"):
        p.unlink(missing_ok=True)


def _remove_stale_staging(target: Path) -> None:
    """Staging directories of overwrites of `target` whose process died before the swap."""
    import fcntl

    for d in target.parent.glob(f".{target.name}{STAGING}*"):
        try:
            fd = os.open(d / LOCK, os.O_RDWR)
        except OSError:
            shutil.rmtree(d, ignore_errors=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # another overwrite is under way; not ours to touch
        finally:
            os.close(fd)
        shutil.rmtree(d, ignore_errors=True)


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories: atomically with renameat2(RENAME_EXCHANGE) where Linux has it,
    else with two renames."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
        if ctypes.get_errno() not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(a))
    parked = a.with_name(a.name + ".old")
    os.rename(a, parked)
    os.rename(b, a)
    os.rename(parked, b)


class TrainingDir:
    """Where a training writes now (`path`), and what its first checkpoint does to DIR."""

    def __init__(self, target: Path, path: Path, *, resume: bool, staged: bool, created: bool, fresh_files: bool):
        self.target, self.path = target, path
        self.resume = resume  # continue from DIR's checkpoint
        self.staged = staged  # an --overwrite training in a staging directory
        self.created = created  # this training made DIR
        self.fresh_files = fresh_files  # config.json is this training's (not a resumed run's settings)
        self.checkpointed = resume  # a checkpoint of this run exists on disk
        self.on_move: list[Callable[[Path], None]] = []
        self.log: Callable[[str], None] = lambda msg: None

    def saved(self, *_: object) -> None:
        """The trainer wrote a checkpoint: the first one makes an --overwrite run the run in DIR."""
        self.checkpointed = True
        if self.staged:
            _exchange(self.path, self.target)  # the new run is now DIR; the old one sits in staging
            old, self.path, self.staged = self.path, self.target, False
            for hook in self.on_move:
                hook(self.path)
            shutil.rmtree(old, ignore_errors=True)
            if old.exists() or old.is_symlink():
                self.log(
                    f"vaelab: warning: the replaced run could not be removed (read-only?); it is kept in {old}: "
                    "remove it by hand"
                )

    def discard(self) -> None:
        """The training failed before its first checkpoint: remove what it wrote."""
        if self.staged:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name in ((ckpt.CONFIG,) if self.fresh_files else ()) + (ckpt.METRICS, ckpt.WEIGHTS, ckpt.RESUME):
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / "tensorboard", ignore_errors=True)
        remove_temporary_files(self.path)
        if self.created and not _entries(self.path):
            (self.path / LOCK).unlink(missing_ok=True)
            try:
                self.path.rmdir()
            except OSError:
                pass


@contextmanager
def training_dir(
    out: str | Path, *, resume: bool, overwrite: bool, main: bool = True, log: Callable[[str], None] = lambda msg: None
) -> Iterator[TrainingDir]:
    """The directory a training writes, locked for the whole block; see the module docstring.
    Processes other than rank 0 of a distributed run (main=False) only read: no lock, no change."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VaelabError(f"{out} is a file; give a directory for the run")
    if resume:
        if not out.is_dir():
            raise VaelabError(f"cannot resume: {out} does not exist; start a run with `vaelab train --out {out}`")
        if not is_run(out):
            raise VaelabError(f"cannot resume: {out} is not a vaelab run (no {ckpt.CONFIG})")
    elif out.is_dir() and _entries(out) and not overwrite:
        if has_checkpoint(out) or (out / ckpt.WEIGHTS).is_file():
            raise VaelabError(
                f"{out} already holds a run; pass --resume to continue it or --overwrite to replace it "
                "(in Python: vaelab.train(..., resume=True) or overwrite=True)"
            )
        if not is_run(out):
            raise VaelabError(f"{out} already holds other files; give a new or empty directory for the run")
    elif out.is_dir() and _entries(out) and not is_run(out):
        raise VaelabError(
            f"{out} is not a vaelab run (no {ckpt.CONFIG}); --overwrite replaces runs only, "
            "so give a new or empty directory"
        )
    if not main:
        yield TrainingDir(
            out, out, resume=resume and has_checkpoint(out), staged=False, created=False, fresh_files=False
        )
        return

    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VaelabError(f"cannot create {out} ({e.strerror}); choose a folder you can write to") from None
    try:
        fd = _lock(out, "vaelab train")
    except BaseException:
        if created:  # leave nothing behind: not a folder holding only a lock
            (out / LOCK).unlink(missing_ok=True)
            try:
                out.rmdir()
            except OSError:
                pass
        raise
    staging_fd = None
    try:
        remove_temporary_files(out)
        _remove_stale_staging(out)
        staged = (
            overwrite and not resume and bool(_entries(out)) and (has_checkpoint(out) or (out / ckpt.WEIGHTS).is_file())
        )
        if resume and not has_checkpoint(out):
            if (out / ckpt.WEIGHTS).exists() or ckpt.read_metrics(out):
                raise VaelabError(
                    f"cannot resume {out}: it holds trained weights but its resume state "
                    f"({ckpt.RESUME}: optimizer, random state, position) is missing, so it cannot continue "
                    f"exactly; restore {ckpt.RESUME} from a copy, or start again with `vaelab train --overwrite "
                    f"--out {out}` (the weights are kept until the new run's first checkpoint)"
                )
            log(
                f"vaelab: {out} has no checkpoint (its training stopped before the first one was written); "
                "starting it from the beginning with its saved settings"
            )
        if staged:
            path = out.with_name(f".{out.name}{STAGING}{os.getpid()}")
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            staging_fd = _lock(path, "vaelab train --overwrite")
        else:
            path = out
        slot = TrainingDir(
            out, path, resume=resume and has_checkpoint(out), staged=staged, created=created, fresh_files=not resume
        )
        slot.log = log
        try:
            yield slot
        except BaseException:
            if not slot.checkpointed:
                slot.discard()
            raise
    finally:
        if staging_fd is not None:
            _unlock(staging_fd)
        _unlock(fd)


# Settings a resumed run may change: none of them changes the mathematics of the run.
RESUMABLE = {"train.epochs", "train.device", "train.compile", "train.cuda_graphs", "data.data_dir"}
# Facts training records about its data, not settings: they are checked against the data itself
# when it is loaded (vaelab.dataprep.load_inputs).
RECORDED = {"model.input_shape", "model.n_classes", "data.split_version"}


def changed_settings(saved: Config, new: Config) -> list[str]:
    """The settings ("section.name", and "section.options.key" for a part's own options) in which
    `new` differs from a run's `saved` ones, leaving out those a resume may change (RESUMABLE, and
    the options their part declares resumable)."""
    old_flat, new_flat = _flatten(saved.to_dict()), _flatten(new.to_dict())
    model_opts, train_opts = new.part_options()
    may = RESUMABLE | RECORDED | {f"train.options.{k}" for k, (o, _) in train_opts.items() if o.resumable}
    may |= {f"model.options.{k}" for k, (o, _) in model_opts.items() if o.resumable}
    keys = set(old_flat) | set(new_flat)
    return sorted(k for k in keys if k not in may and old_flat.get(k) != new_flat.get(k))


def check_resumable(saved: Config, new: Config, run_dir: Path) -> None:
    """A resumed run keeps its settings; only the number of epochs, the device, compilation,
    where the data lives and the options a part declares resumable may change."""
    changed = changed_settings(saved, new)
    if changed:
        raise VaelabError(
            f"cannot resume {run_dir} with different settings ({', '.join(changed)}); "
            "only epochs, device, compile, cuda_graphs, data_dir and the options a part declares "
            "resumable may change"
        )


def _flatten(d: dict) -> dict:
    out = {}
    for section, part in d.items():
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "options" and isinstance(value, dict):  # each option on its own
                out.update({f"{section}.options.{k}": v for k, v in value.items()})
            else:
                out[f"{section}.{key}"] = value
    return out


def load_run(run: str | Path, device: str = "auto", data_dir: str | None = None) -> tuple[Config, VAE]:
    """(config, model in eval mode) of a run directory; `data_dir` overrides where its data lives."""
    from .distributed import resolve_device

    cfg, model = ckpt.load_model(run, resolve_device(device))
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    return cfg, model


def save_evaluation(run: str | Path, result: dict, **settings: Any) -> Path:
    """Keep an `evaluate` result in the run as evaluation_<split>.json (atomic), with the
    settings that produced it, for `vaelab report`."""
    path = Path(run) / f"evaluation_{result['split']}.json"
    atomic_write_text(path, json.dumps({**result, **settings}, indent=2) + "\n")
    return path


def trust_plugins(run: str | Path, log: Callable[[str], None] | None = None) -> list[str]:
    """Allow the plugin files a run's config.json names (`--trust-plugins`; vaelab.plugins says
    why a run's plugins need leave); returns them."""
    from .plugins import is_file, recorded_plugins, trust
    from .safefs import parse_json, read_text

    path = Path(run) / ckpt.CONFIG
    if not path.is_file() and not path.is_symlink():
        return []  # loading the run names what is missing
    specs = recorded_plugins(parse_json(read_text(path, in_run=True), path, "restore it or retrain the run"))
    files = [s for s in specs if s.strip() and is_file(s.strip())]
    trust(files, log)
    return files
