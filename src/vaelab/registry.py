"""Registries of named parts: the one place a part is declared, by a decorator on its definition.

    @vaelab.register_network("resnet")
    class ResNet(vaelab.parts.NetworkFamily): ...

A setting's choices, its `--help` text and its validation all come from its registry, so a part
registered here (by vaelab's own modules, or by a user's plugin module loaded with `--plugin`) is
accepted by the Python API, config files and the command line alike.

This module imports nothing heavy: vaelab's built-in parts are imported the first time a
registry is read, so `vaelab --help` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import VaelabError

T = TypeVar("T")

# The modules that register vaelab's own parts, imported on first use of any registry.
BUILTIN_MODULES = (
    "vaelab.networks",
    "vaelab.latents",
    "vaelab.priors",
    "vaelab.likelihoods",
    "vaelab.objectives",
    "vaelab.baselines",
    "vaelab.optim",
    "vaelab.schedules",
    "vaelab.data.datasets",
)
_loaded = False
# said after a registry's choices wherever an unknown name is reported
REGISTER_YOUR_OWN = "(or register your own in a --plugin module)"


def load_builtins() -> None:
    """Import vaelab's own parts: the core modules, and every module of the vaelab.models package
    (a new built-in model is one new file there, and no other edit)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for name in BUILTIN_MODULES:
            importlib.import_module(name)
        import pkgutil

        models = importlib.import_module("vaelab.models")
        for info in pkgutil.iter_modules(models.__path__):
            importlib.import_module(f"vaelab.models.{info.name}")


class Option:
    """A setting a part declares for itself (`--option KEY=VALUE`, `[model.options]` or
    `[train.options]` in a file): its type, default, bounds and help, validated before anything
    is built and recorded in the run. `resumable=True` says a resumed run may change it (an
    objective's weight may; a network's width may not).

        @vaelab.register_prior("mine")
        class Mine(vaelab.parts.Prior):
            options = {"components": vaelab.Option(int, 10, "mixture components", ge=1)}
    """

    TYPES = (int, float, bool, str, list)

    def __init__(
        self,
        type: type,
        default: Any,
        help: str = "",
        *,
        of: type | None = None,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        choices: tuple | list | None = None,
        resumable: bool = False,
    ):
        if type not in self.TYPES:
            raise TypeError(f"an Option's type is one of int, float, bool, str, list; got {type!r}")
        self.type, self.of, self.help = type, of, help
        self.ge, self.gt, self.le, self.choices, self.resumable = ge, gt, le, choices, resumable
        self.default = self.check(default, "the default")

    def describe(self) -> str:
        kind = f"list of {self.of.__name__}" if self.type is list and self.of else self.type.__name__
        return f"{kind}, default {self.default!r}" + (f"; {self.help}" if self.help else "")

    def check(self, value: Any, where: str) -> Any:
        """`value` converted to the declared type (an int is a float; text from the command line
        is read as JSON before it gets here), else a VaelabError naming `where`."""
        if self.type is list:
            if not isinstance(value, list):
                raise VaelabError(f"{where} must be a list, got {value!r}")
            return [self._scalar(v, self.of, where) if self.of else v for v in value]
        return self._scalar(value, self.type, where)

    def _scalar(self, value: Any, kind: type, where: str) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise VaelabError(f"{where} must be {_WORDS.get(kind, kind.__name__)}, got {value!r}")
        if kind is float and value != value:
            raise VaelabError(f"{where} must be a number, got nan")
        for bound, ok, word in (
            (self.ge, lambda b: value >= b, "at least"),
            (self.gt, lambda b: value > b, "greater than"),
            (self.le, lambda b: value <= b, "at most"),
        ):
            if bound is not None and kind in (int, float) and not ok(bound):
                raise VaelabError(f"{where} must be {word} {bound}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise VaelabError(f"{where} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        return value


_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def declared_options(part: Any) -> dict[str, Option]:
    """The options a part declares (a class's or a registered function's `options`)."""
    options = getattr(part, "options", None) or {}
    return dict(options) if isinstance(options, dict) else {}


class Registry(Generic[T]):
    """Named parts of one kind. `base`, when given, is the declared interface every part must
    implement (an abstract base class); `what` names the kind in messages."""

    def __init__(self, kind: str, what: str, flag: str = "", base: type | None = None):
        self.kind, self.what, self.flag, self.base = kind, what, flag, base
        self.plural = what[:-1] + "ies" if what.endswith("y") else what + "s"
        self._parts: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated class or function under `name`."""
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"a {self.what} needs a non-empty name without spaces around it, got {name!r}")

        def add(part: T) -> T:
            if self.base is not None and not (isinstance(part, type) and issubclass(part, self.base)):
                raise TypeError(
                    f"{self.what} {name!r} must be a subclass of {self.base.__module__}."
                    f"{self.base.__qualname__}, got {part!r}"
                )
            old = self._parts.get(name)
            if old is not None and old is not part and _origin(old) != _origin(part):
                raise ValueError(f"{self.what} {name!r} is registered twice ({_origin(old)} and {_origin(part)})")
            self._parts[name] = part
            if isinstance(part, type):
                part.registered_name = name  # type: ignore[attr-defined]
            return part

        return add

    def add(self, name: str, part: T) -> T:
        return self.register(name)(part)

    def __getitem__(self, name: str) -> T:
        load_builtins()
        try:
            return self._parts[name]
        except KeyError:
            raise VaelabError(
                f"unknown {self.what} {name!r}{f' ({self.flag})' if self.flag else ''}; choose one of "
                f"{', '.join(self.names())} {REGISTER_YOUR_OWN}"
            ) from None

    def __contains__(self, name: object) -> bool:
        load_builtins()
        return name in self._parts

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        load_builtins()
        return list(self._parts)

    def items(self) -> list[tuple[str, T]]:
        load_builtins()
        return list(self._parts.items())


def _origin(part: Any) -> str:
    part = getattr(part, "fn", part)  # an objective, estimator or schedule: where its function is
    return f"{getattr(part, '__module__', '?')}.{getattr(part, '__qualname__', repr(part))}"


# The registries. Interfaces (abstract bases) are attached by the modules that define them
# (parts.py), which keeps this module free of torch.
NETWORKS: Registry = Registry("network", "network", "--model")
POSTERIORS: Registry = Registry("posterior", "latent family", "--latent")
PRIORS: Registry = Registry("prior", "prior", "--prior")
LIKELIHOODS: Registry = Registry("likelihood", "likelihood", "--likelihood")
OBJECTIVES: Registry = Registry("objective", "objective", "--objective")
ESTIMATORS: Registry = Registry("estimator", "gradient estimator", "--estimator")
BASELINES: Registry = Registry("baseline", "baseline", "--baseline")
OPTIMIZERS: Registry = Registry("optimizer", "optimizer", "--optimizer")
LR_SCHEDULES: Registry = Registry("lr_schedule", "learning-rate schedule", "--lr-schedule")
INITS: Registry = Registry("init", "initialisation", "--init")
ACTIVATIONS: Registry = Registry("activation", "activation", "--activation")
DATASETS: Registry = Registry("dataset", "dataset", "--dataset")
ALL = (
    NETWORKS,
    POSTERIORS,
    PRIORS,
    LIKELIHOODS,
    OBJECTIVES,
    ESTIMATORS,
    BASELINES,
    OPTIMIZERS,
    LR_SCHEDULES,
    INITS,
    ACTIVATIONS,
    DATASETS,
)


class Objective:
    """A training objective `fn(model, x, ctx) -> (loss, per-example terms)` and what it declares:
    how many samples of z it draws per point for the train settings t (memory is sized before
    training), whether its gradient follows train.estimator (the ELBO's does), and its own
    options (read as ctx.options[key])."""

    def __init__(
        self,
        fn: Callable,
        samples_per_point: Callable[[Any], int],
        uses_estimator: bool,
        options: dict[str, Option] | None = None,
    ):
        self.fn, self.samples_per_point, self.uses_estimator = fn, samples_per_point, uses_estimator
        self.options = dict(options or {})
        self.__name__ = getattr(fn, "__name__", "objective")
        self.__doc__ = fn.__doc__

    def __call__(self, model: Any, x: Any, ctx: Any) -> Any:
        return self.fn(model, x, ctx)


def register_objective(
    name: str,
    *,
    samples_per_point: Callable[[Any], int] | None = None,
    uses_estimator: bool = False,
    options: dict[str, Option] | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator for an objective function `fn(model, x, ctx) -> (loss, terms)`; `samples_per_point`
    (default: train.samples) says how many z it draws per point; `options` declares its own
    settings (`--option KEY=VALUE`, read as ctx.options[KEY])."""

    def add(fn: Callable) -> Callable:
        OBJECTIVES.add(name, Objective(fn, samples_per_point or (lambda t: t.samples), uses_estimator, options))
        return fn

    return add


class Estimator:
    """A gradient estimator of the ELBO, `fn(model, x, ctx) -> (loss, terms)`, and its needs:
    `pathwise` (a gradient through z, so straight-through applies), `discrete_only` (for
    discrete latents), `uses_baseline` (a control variate, --baseline)."""

    def __init__(
        self,
        fn: Callable,
        pathwise: bool,
        discrete_only: bool,
        uses_baseline: bool,
        options: dict[str, Option] | None = None,
    ):
        self.fn, self.pathwise, self.discrete_only, self.uses_baseline = fn, pathwise, discrete_only, uses_baseline
        self.options = dict(options or {})
        self.__name__ = getattr(fn, "__name__", "estimator")

    def __call__(self, model: Any, x: Any, ctx: Any) -> Any:
        return self.fn(model, x, ctx)


def register_estimator(
    name: str,
    *,
    pathwise: bool = True,
    discrete_only: bool = False,
    uses_baseline: bool = False,
    options: dict[str, Option] | None = None,
) -> Callable[[Callable], Callable]:
    def add(fn: Callable) -> Callable:
        ESTIMATORS.add(name, Estimator(fn, pathwise, discrete_only, uses_baseline, options))
        return fn

    return add


class LRSchedule:
    """A learning-rate schedule `fn(base_lr, epoch) -> lr` for the 0-based epoch, a function of
    the epoch alone so a resumed run recomputes it and continues exactly, and `describe(epoch)`,
    a note on where the epoch is for the training log ("" for none)."""

    def __init__(self, fn: Callable[[float, int], float], describe: Callable[[int], str]):
        self.fn, self.describe = fn, describe
        self.__name__ = getattr(fn, "__name__", "lr_schedule")
        self.__doc__ = fn.__doc__

    def __call__(self, base_lr: float, epoch: int) -> float:
        return self.fn(base_lr, epoch)


def register_lr_schedule(
    name: str, *, describe: Callable[[int], str] | None = None
) -> Callable[[Callable[[float, int], float]], Callable[[float, int], float]]:
    """Decorator for a learning-rate schedule `fn(base_lr, epoch) -> lr` (--lr-schedule NAME);
    `describe(epoch)`, optional, adds a note to each epoch's log line."""

    def add(fn: Callable[[float, int], float]) -> Callable[[float, int], float]:
        if not callable(fn):
            raise TypeError(f"learning-rate schedule {name!r} must be a function (base_lr, epoch) -> lr, got {fn!r}")
        LR_SCHEDULES.add(name, LRSchedule(fn, describe or (lambda epoch: "")))
        return fn

    return add


register_network = NETWORKS.register
register_latent = POSTERIORS.register
register_prior = PRIORS.register
register_likelihood = LIKELIHOODS.register
register_dataset = DATASETS.register
# a score-function baseline is a vaelab.parts.Baseline class, built as cls(input_shape)
register_baseline = BASELINES.register
# an optimizer is a function (params, train settings, device) -> torch.optim.Optimizer; the train
# settings carry --lr, --weight-decay and the rest (vaelab.config.TrainConfig)
register_optimizer = OPTIMIZERS.register
# an initialisation is a function (network) -> None that sets the weights of an encoder or decoder
# in place; --init NAME applies it to both
register_init = INITS.register
# an activation is a torch.nn.Module class, built with no arguments
register_activation = ACTIVATIONS.register
