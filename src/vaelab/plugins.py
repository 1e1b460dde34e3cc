"""Users' own parts: modules imported by `--plugin MODULE_OR_FILE.py` that register networks,
latent families, priors, likelihoods, objectives, estimators, score-function baselines,
optimizers, learning-rate schedules, initialisations, activations or data sets with vaelab's
decorators (vaelab.register_*).

A run records its plugins in config.json, and every later command on it (evaluate, sample, plot,
report, explore, --resume) imports them again before reading the rest of the config, so the
parts' names resolve. A plugin that cannot be imported is one line naming it.

A plugin is code, and a run directory may come from someone else: importing the plugin files a
copied run names would run their code, as unpickling would. So a run's plugin files are imported
only when the user has said so: files this user passed to `--plugin` (or to `build_config`'s
`plugins`) or allowed with `--trust-plugins RUN` (`vaelab.trust_plugins(RUN)`) on this machine
are recorded in `trusted_plugins.json` under $VAELAB_STATE_DIR (default
$XDG_STATE_HOME/vaelab, else ~/.local/state/vaelab); any other is refused in one line that names
it and says how to allow it. Plugins given as module names are installed code and need no leave.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, TracebackType

from . import registry
from .errors import VaelabError

_loaded: dict[str, ModuleType] = {}
_VAELAB = Path(__file__).resolve().parent


def is_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def normalize(spec: str) -> str:
    """A file plugin as its absolute path (so the run finds it from anywhere), a module as named."""
    if not isinstance(spec, str) or not spec.strip():
        raise VaelabError(f"--plugin needs a module name or a .py file, got {spec!r}")
    spec = spec.strip()
    if is_file(spec):
        return str(Path(spec).expanduser().absolute())
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", spec):
        raise VaelabError(f"--plugin {spec!r} is neither a module name (my_pkg.parts) nor a .py file")
    return spec


def load(specs: list[str] | tuple[str, ...]) -> list[str]:
    """Import each plugin once (file path or module name); returns the normalized specs. vaelab's
    own parts come first, so a plugin's registrations are checked against them and their
    interfaces."""
    if specs:
        registry.load_builtins()
    out = []
    for spec in specs:
        spec = normalize(spec)
        out.append(spec)
        if spec not in _loaded:
            _loaded[spec] = _import(spec)
    return out


def loaded() -> dict[str, ModuleType]:
    """The plugins imported in this process, by spec."""
    return dict(_loaded)


def _import(spec: str) -> ModuleType:
    if is_file(spec):
        path = Path(spec)
        if not path.is_file():
            raise VaelabError(
                f"plugin {spec} not found; a run trained with it needs it: restore the file, "
                "or give the path of your parts module"
            )
        stem = re.sub(r"\W", "_", path.stem)
        name = f"vaelab_plugin_{stem}_{hashlib.sha1(spec.encode()).hexdigest()[:8]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise VaelabError(f"plugin {spec} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise _failure(spec, e) from None
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name and spec.startswith(e.name):
            raise VaelabError(
                f"plugin module {spec!r} cannot be imported (no module named {e.name!r}); install "
                "it, or give the path of its .py file"
            ) from None
        raise _failure(spec, e) from None
    except Exception as e:
        raise _failure(spec, e) from None


def plugin_frame(tb: TracebackType | None) -> tuple[str, str, int] | None:
    """(plugin spec, file, line) of the innermost frame of a traceback that lies in a loaded
    plugin's code, or None when the error did not pass through a plugin."""
    files: dict[str, str] = {}
    for spec, module in _loaded.items():
        path = getattr(module, "__file__", None)
        if path:
            files[str(Path(path).resolve())] = spec
    found = None
    for frame in traceback.extract_tb(tb):
        owner = files.get(str(Path(frame.filename).resolve()))
        if owner is not None:
            found = (owner, frame.filename, frame.lineno or 0)
    return found


def _failure(spec: str, e: Exception) -> VaelabError:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "importlib" not in f.filename]
    # the plugin's own line, not the vaelab check it failed (a registration of the wrong kind)
    theirs = [f for f in frames if not Path(f.filename).is_relative_to(_VAELAB)] or frames
    where = f" at {theirs[-1].filename}:{theirs[-1].lineno}" if theirs else ""
    return VaelabError(f"plugin {spec} failed while importing{where}: {type(e).__name__}: {e}")


# -- which plugin files a run may import ----------------------------------------------------

TRUST_FILE = "trusted_plugins.json"
_trusted_here: set[str] = set()  # allowed in this process (kept even where the record cannot be written)


def state_dir() -> Path:
    """Where vaelab keeps what this user allowed: $VAELAB_STATE_DIR, else $XDG_STATE_HOME/vaelab,
    else ~/.local/state/vaelab."""
    if os.environ.get("VAELAB_STATE_DIR"):
        return Path(os.environ["VAELAB_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vaelab"


def _recorded() -> set[str]:
    from .safefs import read_text

    path = state_dir() / TRUST_FILE
    try:
        data = json.loads(read_text(path, in_run=False))
    except (VaelabError, ValueError, RecursionError):
        return set()  # no record yet (or an unreadable one): nothing is allowed but what this process allows
    files = data.get("files") if isinstance(data, dict) else None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def is_trusted(spec: str) -> bool:
    """A module name (installed code), a file this process imported or allowed, or a file this
    user allowed before (the record in state_dir())."""
    return not is_file(spec) or spec in _loaded or spec in _trusted_here or spec in _recorded()


def trust(specs: list[str] | tuple[str, ...], log: Callable[[str], None] | None = None) -> None:
    """Record the plugin files in `specs` as this user's choice: later commands on runs that name
    them import them. The record is written atomically; where it cannot be written (a read-only
    home), the files are allowed for this process only, and `log` says so."""
    files = {normalize(s) for s in specs if isinstance(s, str) and s.strip() and is_file(s.strip())}
    if not files:
        return
    _trusted_here.update(files)
    have = _recorded()
    if files <= have:
        return
    from .safefs import atomic_write_text

    path = state_dir() / TRUST_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"files": sorted(have | files)}, indent=1) + "\n")
    except (OSError, VaelabError) as e:
        if log is not None:
            log(f"vaelab: warning: could not record the trusted plugins in {path} ({e}); allowed for this command only")


def recorded_plugins(config: dict) -> list[str]:
    """The plugins a run's config.json names (its `plugins` list), as written."""
    specs = config.get("plugins", []) if isinstance(config, dict) else []
    return [s for s in specs if isinstance(s, str)] if isinstance(specs, list) else []


def require_trusted(specs: list[str], config_path: Path) -> None:
    """Refuse, in one line, a run whose config names plugin files this user has not allowed."""
    strangers = []
    for spec in specs:
        try:
            spec = normalize(spec)
        except VaelabError:
            continue  # Config.from_dict names a malformed entry
        if not is_trusted(spec):
            strangers.append(spec)
    if strangers:
        run = config_path.parent
        raise VaelabError(
            f"{config_path} names plugin code that loading the run would run: {', '.join(strangers)}; vaelab "
            f"imports a run's plugin files only with your leave: if you trust them, add --trust-plugins "
            f"(Python: vaelab.trust_plugins({str(run)!r})), or install them as a module"
        )
