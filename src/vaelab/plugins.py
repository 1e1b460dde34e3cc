"""Users' own parts: modules imported by `--plugin MODULE_OR_FILE.py` that register networks,
latent families, priors, likelihoods, objectives, estimators, score-function baselines,
optimizers, learning-rate schedules, initialisations, activations or data sets with vaelab's
decorators (vaelab.register_*).

A run records its plugins in config.json, and every later command on it (evaluate, sample, plot,
report, explore, --resume) imports them again before reading the rest of the config, so the
parts' names resolve. A plugin that cannot be imported is one line naming it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType

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


def _failure(spec: str, e: Exception) -> VaelabError:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "importlib" not in f.filename]
    # the plugin's own line, not the vaelab check it failed (a registration of the wrong kind)
    theirs = [f for f in frames if not Path(f.filename).is_relative_to(_VAELAB)] or frames
    where = f" at {theirs[-1].filename}:{theirs[-1].lineno}" if theirs else ""
    return VaelabError(f"plugin {spec} failed while importing{where}: {type(e).__name__}: {e}")
