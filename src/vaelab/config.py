"""Run configuration: three dataclasses (data, model, train), presets, files and flags.

Every field that a user may set from the command line carries its flag and help text in its
metadata, so the CLI, the config files and the presets all speak about the same names:
`--latent-dim` is `model.latent_dim`, and `[model] latent_dim = 20` in a TOML file.

Precedence: preset < config file < command-line flags.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import VaelabError
from .registry import Option, declared_options

Number = int | float
Choices = list[str] | Callable[[], list[str]] | None


def opt(
    default: Any,
    flag: str | None = None,
    help: str = "",
    choices: Choices = None,
    *,
    ge: Number | None = None,
    gt: Number | None = None,
    le: Number | None = None,
    lt: Number | None = None,
    length: int | None = None,
    **kw: Any,
) -> Any:
    """A config field; `flag` makes it settable from the command line.

    Constraints are declared here, once, and checked wherever a value enters (flags, files,
    presets, a run's config.json, the Python API): `choices` (a list, or a function returning
    the names of a registry), numeric bounds `ge` (>=), `gt` (>), `le` (<=), `lt` (<) applied to a number
    or to every element of a list, and a list's `length`. Floats must be finite."""
    meta = {"flag": flag, "help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "length": length}
    if isinstance(default, (list, dict)):
        return field(default_factory=functools.partial(copy.copy, default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def _registry(name: str) -> list[str]:
    """The names in one of the parts' registries (vaelab's own parts are imported when first
    asked, not at import)."""
    from . import registry

    names: list[str] = getattr(registry, name).names()
    return names


def _default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def choices_of(f: dataclasses.Field) -> list[str] | None:
    c = f.metadata.get("choices")
    return list(c()) if callable(c) else c


def field_name(section: str, f: dataclasses.Field) -> str:
    """How a user names a setting: its flag, else section.name."""
    return f.metadata.get("flag") or f"{section}.{f.name}"


MAX_SEED = 2**63 - 1


@dataclass
class DataConfig:
    dataset: str = opt(
        "mnist",
        "--dataset",
        "data set: mnist, fashion_mnist, binarized_mnist, frey_face, or your\n"
        "own images: folder:PATH (PNG/JPEG files) or npy:PATH (an N x [C x] H x W array),\n"
        "split 80/10/10 by a fixed permutation (see vaelab.data.custom)",
    )
    binarize: str = opt(
        "dynamic", "--binarize", "how grey pixels become Bernoulli targets", choices=["none", "dynamic", "static"]
    )
    binarize_seed: int = opt(
        0,
        ge=0,
        le=MAX_SEED,
        help="seed of the fixed draw for static binarization (and of the evaluation\n"
        "targets under dynamic binarization)",
    )
    full_train: bool = opt(
        False,
        "--full-train",
        "train on train+valid (60000 for MNIST); the per-epoch\nevaluation then uses the test split",
    )
    data_dir: str | None = opt(None, "--data-dir", "data directory (default: $VAELAB_DATA_DIR, else ~/.cache/vaelab)")
    image_size: str | None = opt(
        None,
        "--image-size",
        "resize folder:/npy: images to HxW, e.g. 64x64 (default: keep\n"
        "their size, which must then be the same for all)",
    )
    split_version: int | None = opt(
        None,
        help="how the data set dealt its examples into train/valid/test when the run was trained:\n"
        "recorded by vaelab (DatasetInfo.split_version), not a setting; None before training",
        ge=1,
    )

    def validate(self) -> None:
        from .data.custom import is_custom, normalize_source, parse_image_size
        from .registry import DATASETS

        validate_fields(self, "data")
        if self.data_dir is not None and not self.data_dir.strip():
            raise VaelabError("--data-dir needs a folder's path, got an empty string (leave it out for the default)")
        if is_custom(self.dataset):
            self.dataset = normalize_source(self.dataset)  # absolute path, so the run works from anywhere
        elif self.dataset not in DATASETS:
            raise VaelabError(
                f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS.names())}, "
                "or folder:PATH / npy:PATH for your own images"
            )
        if self.image_size is not None:
            if not is_custom(self.dataset):
                raise VaelabError(f"--image-size applies to folder:PATH and npy:PATH data only, not {self.dataset}")
            self.image_size = "{}x{}".format(*parse_image_size(self.image_size))


@dataclass
class ModelConfig:
    network: str = opt(
        "mlp",
        "--model",
        "encoder/decoder network family: fully connected, or convolutional",
        choices=lambda: _registry("NETWORKS"),
    )
    latent: str = opt(
        "gaussian",
        "--latent",
        "latent family: gaussian (--latent-dim), or categorical\n"
        "(--categorical-dims, trained through the Gumbel-Softmax relaxation)",
        choices=lambda: _registry("POSTERIORS"),
    )
    latent_dim: int = opt(20, "--latent-dim", "number of latent dimensions", ge=1)
    hidden: list[int] = opt(
        [400],
        "--hidden",
        "hidden layer sizes, e.g. 400 or 500,500; with --model conv the fully\n"
        "connected layers after the convolutions, may be empty (--hidden '')",
        ge=1,
    )
    channels: list[int] = opt(
        [32, 64],
        "--channels",
        "--model conv: output channels of each 3x3 convolution (stride 2\n"
        "while the feature map is larger than 2x2), e.g. 32,64",
        ge=1,
    )
    activation: str = opt("relu", "--activation", "hidden activation", choices=lambda: _registry("ACTIVATIONS"))
    prior: str = opt(
        "auto",
        "--prior",
        "prior p(z): auto is the latent family's own (standard-normal for\n"
        "gaussian, uniform-categorical for categorical)",
        choices=lambda: ["auto", *_registry("PRIORS")],
    )
    likelihood: str = opt(
        "bernoulli", "--likelihood", "decoder distribution p(x|z)", choices=lambda: _registry("LIKELIHOODS")
    )
    # The categorical latent (Jang, Gu & Poole 2017): N variables of K classes, relaxed in training
    # with temperature tau = max(tau_min, tau0 exp(-anneal_rate t)), t = the step rounded down
    # to a multiple of anneal_every (schedules.gumbel_temperature).
    categorical_dims: list[int] = opt(
        [20, 10],
        "--categorical-dims",
        "--latent categorical: N x K, N variables of\nK classes each, e.g. 20x10",
        length=2,
        ge=1,
    )
    tau0: float = opt(1.0, "--tau0", "--latent categorical: initial Gumbel-Softmax temperature", gt=0)
    tau_min: float = opt(0.5, "--tau-min", "--latent categorical: the temperature never falls below this", gt=0)
    anneal_rate: float = opt(
        3e-5,
        "--anneal-rate",
        "--latent categorical: r in tau = max(tau_min, tau0 exp(-r t))\nat global step t (0 keeps tau0)",
        ge=0,
    )
    anneal_every: int = opt(
        1000, "--anneal-every", "--latent categorical: update the temperature every this many steps", ge=1
    )
    hard: bool = opt(
        False,
        "--hard",
        "--latent categorical: straight-through Gumbel-Softmax (one-hot forward\npass, relaxed gradient)",
    )
    baseline: str = opt(
        "none",
        "--baseline",
        "--estimator score-function: the control variate subtracted from the\n"
        "learning signal: a moving average; learned (moving average + a small MLP on\n"
        "x); nvil (learned, then divided by a running max(1, sd): Mnih & Gregor 2014)",
        choices=lambda: ["none", *_registry("BASELINES")],
    )
    init: str = opt(
        "torch",
        "--init",
        "weight initialisation: PyTorch's default; glorot (Glorot & Bengio uniform\n"
        "weights, zero biases: the IWAE paper); normal (every weight and bias from N(0, 0.01^2): the\n"
        "AEVB paper)",
        choices=lambda: _registry("INITS"),
    )
    output_bias: str = opt(
        "default",
        "--output-bias",
        "the decoder's output bias at the start: as --init sets it, or\n"
        "data-mean (the logit of the mean training image, as the IWAE code; --model mlp)",
        choices=["default", "data-mean"],
    )
    # Settings of parts that have their own (a plugin's, or e.g. z2_dim of gaussian-2layer, components
    # of vampprior): `--option KEY=VALUE` on the command line, [model.options] in a file.
    options: dict[str, Any] = opt({})
    # Filled in from the data set when a run starts; part of the model's identity.
    input_shape: list[int] = opt([1, 28, 28], length=3, ge=1)
    # The number of classes of the training labels, for a conditional network (--model cvae);
    # None for a model that takes no condition. Filled in when a run starts, like input_shape.
    n_classes: int | None = opt(None, ge=2)

    def validate(self) -> None:
        validate_fields(self, "model")
        if self.categorical_dims[1] < 2:
            raise VaelabError(
                f"--categorical-dims must be NxK with K >= 2 classes, e.g. 20x10; "
                f"got {'x'.join(map(str, self.categorical_dims))}"
            )
        if not self.channels:
            raise VaelabError("--channels needs at least one channel count, e.g. 32,64")


@dataclass
class TrainConfig:
    epochs: int = opt(10, "--epochs", "number of passes over the training set", ge=1)
    batch_size: int = opt(128, "--batch-size", "examples per step", ge=1)
    lr: float = opt(1e-3, "--lr", "learning rate", gt=0)
    optimizer: str = opt("adam", "--optimizer", "optimizer", choices=lambda: _registry("OPTIMIZERS"))
    adam_betas: list[float] = opt([0.9, 0.999], length=2, ge=0, lt=1)
    adam_eps: float = opt(1e-8, gt=0)
    sgd_momentum: float = opt(0.9, ge=0, lt=1)
    weight_decay: float = opt(0.0, "--weight-decay", "L2 penalty on the weights (the paper's small prior)", ge=0)
    grad_clip: float | None = opt(None, "--grad-clip", "clip the gradient norm to this value", gt=0)
    objective: str = opt(
        "elbo",
        "--objective",
        "training objective: the ELBO or the k-sample IWAE bound",
        choices=lambda: _registry("OBJECTIVES"),
    )
    samples: int = opt(1, "--samples", "L: Monte-Carlo samples of z per data point (ELBO)", ge=1)
    k: int = opt(50, "--k", "importance samples per data point (--objective iwae)", ge=1)
    kl: str = opt(
        "auto",
        "--kl",
        "KL term: closed form (analytic) or Monte-Carlo (mc); auto: the closed\n"
        "form where the latent family and prior have one, else Monte-Carlo (the run records which)",
        choices=["auto", "analytic", "mc"],
    )
    beta: float = opt(1.0, "--beta", "weight of the KL term (1 = the ELBO)", ge=0)
    seed: int = opt(0, "--seed", "random seed (weights, batches, binarization, noise)", ge=0, le=MAX_SEED)
    device: str = opt("auto", "--device", "where to train", choices=["auto", "cpu", "cuda"])
    precision: str = opt(
        "fp32",
        "--precision",
        "network arithmetic: fp32, or bf16/fp16 autocast (fp16 on CUDA,\n"
        "with a gradient scaler); likelihoods and KL stay in float32",
        choices=["fp32", "bf16", "fp16"],
    )
    compile: bool = opt(
        False,
        "--compile",
        "torch.compile the model and objective (falls back to eager, with\na warning, where compilation fails)",
    )
    cuda_graphs: bool = opt(
        False,
        "--cuda-graphs",
        "replay the training step as CUDA graphs (torch.compile's\n"
        "reduce-overhead mode): for small models, whose GPU time is kernel launches",
    )
    lr_schedule: str = opt(
        "constant",
        "--lr-schedule",
        "constant, or iwae: lr * 10^(-i/7) for 3^i epochs, i = 0..7 (3280 epochs)",
        choices=lambda: _registry("LR_SCHEDULES"),
    )
    early_stopping: int = opt(
        0,
        "--early-stopping",
        "stop once the watched split's neg_elbo has not improved for this many\n"
        "epochs (counted after KL warm-up), keeping the best epoch's weights (0: off)",
        ge=0,
    )
    warmup_epochs: float = opt(
        0.0,
        "--warmup-epochs",
        "KL warm-up: the KL's weight rises linearly from 0 to --beta\nover this many epochs, step by step (0: off)",
        ge=0,
    )
    free_bits: float = opt(
        0.0,
        "--free-bits",
        "free bits: each latent group's KL (batch mean) is not penalised\nbelow this many nats (0: off)",
        ge=0,
    )
    watch: str = opt(
        "auto",
        "--watch",
        "the split evaluated after every epoch: valid, or test (as papers that\n"
        "plot test curves); auto: valid, or test with --full-train",
        choices=["auto", "valid", "test"],
    )
    eval_batch_size: int = opt(1000, ge=1)
    estimator: str = opt(
        "reparam",
        "--estimator",
        "gradient of the ELBO for --latent categorical: reparam (Gumbel-\n"
        "Softmax; add --hard for straight-through) or score-function (REINFORCE; add --baseline)",
        choices=lambda: _registry("ESTIMATORS"),
    )

    # Settings the objective or estimator declares for itself (`--option KEY=VALUE`, [train.options]).
    options: dict[str, Any] = opt({})

    def validate(self) -> None:
        validate_fields(self, "train")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # users' modules that register parts (--plugin), imported before anything is validated
    plugins: list[str] = field(default_factory=list)

    SECTIONS = ("data", "model", "train")

    def validate(self) -> Config:
        from . import plugins

        self.plugins = plugins.load(self.plugins)  # their parts' names must resolve
        self.data.validate()
        self.model.validate()
        self.train.validate()
        m, t = self.model, self.train
        from .registry import ESTIMATORS, OBJECTIVES

        self._validate_options()
        if t.kl == "auto":  # recorded as chosen, so the run says which KL its numbers use
            from .parts import has_closed_form_kl

            t.kl = "analytic" if has_closed_form_kl(m.latent, m.prior) else "mc"
        estimator, default = ESTIMATORS[t.estimator], _default(TrainConfig, "estimator")
        if t.estimator != default and not OBJECTIVES[t.objective].uses_estimator:
            raise VaelabError(
                f"--estimator {t.estimator} estimates the ELBO's gradient; --objective {t.objective} "
                "has its own (use --objective elbo, or drop --estimator)"
            )
        if m.hard and not estimator.pathwise:
            raise VaelabError(f"--hard is a path-wise estimator; drop it with --estimator {t.estimator}")
        if self.train.watch == "valid" and self.data.full_train:
            raise VaelabError(
                "--watch valid with --full-train would watch images the model trains on; "
                "use --watch test, or drop --full-train"
            )
        if m.baseline != "none" and not estimator.uses_baseline:
            raise VaelabError(
                f"--baseline {m.baseline} is a control variate of estimators that use one; "
                f"--estimator {t.estimator} does not (add --estimator score-function, or drop "
                "--baseline)"
            )
        return self

    def part_options(self) -> tuple[dict[str, tuple[Option, str]], dict[str, tuple[Option, str]]]:
        """The options the parts of this config declare, by key: (model parts', objective's and
        estimator's), each with the part that owns it ("prior vampprior")."""
        from .registry import BASELINES, ESTIMATORS, LIKELIHOODS, NETWORKS, OBJECTIVES, POSTERIORS, PRIORS

        m, t = self.model, self.train
        latent = POSTERIORS[m.latent]
        prior = latent.default_prior if m.prior == "auto" else m.prior
        model_parts = [
            (NETWORKS[m.network], f"--model {m.network}"),
            (latent, f"--latent {m.latent}"),
            (PRIORS[prior], f"--prior {prior}"),
            (LIKELIHOODS[m.likelihood], f"--likelihood {m.likelihood}"),
        ]
        if m.baseline != "none":
            model_parts.append((BASELINES[m.baseline], f"--baseline {m.baseline}"))
        objective = OBJECTIVES[t.objective]
        train_parts = [(objective, f"--objective {t.objective}")]
        if objective.uses_estimator:
            train_parts.append((ESTIMATORS[t.estimator], f"--estimator {t.estimator}"))

        def collect(parts: list[tuple[Any, str]]) -> dict[str, tuple[Option, str]]:
            out: dict[str, tuple[Option, str]] = {}
            for part, name in parts:
                for key, option in declared_options(part).items():
                    if key in out:
                        if out[key][0] is not option:  # one Option may serve two parts, as one setting
                            raise VaelabError(
                                f"option {key!r} is declared by both {out[key][1]} and {name}; rename one"
                            )
                        continue
                    out[key] = (option, name)
            return out

        return collect(model_parts), collect(train_parts)

    def _validate_options(self) -> None:
        """Every option belongs to a part of this config, is of its declared type, and the
        defaults of the rest are filled in (the run records them). `--option` writes to
        model.options; keys an objective or estimator declares move to train.options."""
        model_opts, train_opts = self.part_options()
        m, t = self.model, self.train
        for key in [k for k in m.options if k not in model_opts and k in train_opts]:
            t.options[key] = m.options.pop(key)
        for section, given, declared in (("model", m.options, model_opts), ("train", t.options, train_opts)):
            unknown = sorted(k for k in given if k not in declared)
            if unknown:
                known = model_opts | train_opts
                takes = ", ".join(f"{k} ({owner})" for k, (_, owner) in known.items()) or "none"
                raise VaelabError(
                    f"unknown option {unknown[0]!r} (--option, or {section}.options); the parts of this run take: "
                    f"{takes}"
                )
            for key, (option, owner) in declared.items():
                where = f"option {key} of {owner}"
                given[key] = option.check(given[key], where) if key in given else option.default

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, base: Config | None = None, source: str = "config") -> Config:
        """Overlay `d` (nested by section) on `base`, rejecting unknown keys by name."""
        cfg = base if base is not None else cls()
        if not isinstance(d, dict):
            raise VaelabError(f"{source}: expected a table with [data], [model], [train] sections")
        d = dict(d)
        if "plugins" in d:
            extra = d.pop("plugins")
            if not isinstance(extra, list) or not all(isinstance(p, str) for p in extra):
                raise VaelabError(f"{source}: plugins must be a list of module names or .py files")
            from . import plugins  # imported now: the settings below may name their parts

            cfg.plugins = [*cfg.plugins, *(p for p in plugins.load(extra) if p not in cfg.plugins)]
        unknown = set(d) - set(cls.SECTIONS)
        if unknown:
            raise VaelabError(f"{source}: unknown section(s) {sorted(unknown)}; expected {list(cls.SECTIONS)}")
        for section, values in d.items():
            part = getattr(cfg, section)
            names = {f.name: f for f in dataclasses.fields(part)}
            if not isinstance(values, dict):
                raise VaelabError(f"{source}: [{section}] must be a table of settings")
            for key, value in values.items():
                if key not in names:
                    raise VaelabError(f"{source}: unknown setting {section}.{key}; known: {', '.join(names)}")
                where = field_name(section, names[key]) if source == "command line" else f"{source}: {section}.{key}"
                value = _coerce(value, names[key], where)
                if isinstance(value, dict):  # a table of part settings adds to the one before it
                    value = {**getattr(part, key), **value}
                setattr(part, key, value)
        return cfg


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
_TYPE_WORDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
_PLURAL = {str: "texts", int: "whole numbers", float: "numbers", bool: "true/false values"}


def _parse_type(annotation: str) -> tuple[type, bool, bool]:
    """(element type, is a list, may be None) of a field annotation such as 'list[int]' or
    'float | None' (annotations are strings: `from __future__ import annotations`); a table of
    settings ('dict[...]') is (dict, False, False)."""
    if annotation.replace(" ", "").startswith("dict["):
        return dict, False, False
    text = annotation.replace(" ", "")
    optional = text.endswith("|None")
    text = text.removesuffix("|None")
    if text.startswith("list[") and text.endswith("]"):
        return _TYPES[text[5:-1]], True, optional
    return _TYPES[text], False, optional


def _scalar(value: Any, kind: type, where: str) -> Any:
    """One value as `kind`; text is parsed (it comes from the command line)."""
    bad = VaelabError(f"{where} must be {_TYPE_WORDS[kind]}, got {value!r}")
    if kind is str:
        if not isinstance(value, str):
            raise bad
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        raise bad
    if isinstance(value, bool):
        raise bad
    if isinstance(value, str):
        try:
            value = float(value) if kind is float or not value.strip().lstrip("+-").isdigit() else int(value)
        except ValueError:
            raise bad from None
    if not isinstance(value, (int, float)):
        raise bad
    if kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise bad
            value = int(value)
        return value
    value = float(value)
    if not math.isfinite(value):
        raise VaelabError(f"{where} must be a finite number, got {value}")
    return value


def _coerce(value: Any, f: dataclasses.Field, where: str) -> Any:
    """A value from JSON/TOML/the command line/the API as the field's type, within its declared
    constraints, or a VaelabError that names the setting and says what it takes."""
    kind, is_list, optional = _parse_type(str(f.type))
    if kind is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise VaelabError(f"{where} must be a table of named settings, got {value!r}")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise VaelabError(f"{where} must hold numbers, text, lists and tables only, got {value!r}") from None
        return dict(value)
    if value is None:
        if optional:
            return None
        raise VaelabError(f"{where} needs a value")
    if is_list:
        if isinstance(value, str):
            text = value.replace("x", ",").strip()
            parts = [] if not text else text.split(",")
            if any(not p.strip() for p in parts):
                raise VaelabError(
                    f"{where} got {value!r}, which has an empty entry; write comma-separated values, e.g. 500,500"
                )
            value = [p.strip() for p in parts]
        if not isinstance(value, (list, tuple)):
            raise VaelabError(f"{where} must be a list of {_PLURAL[kind]}, got {value!r}")
        value = [_scalar(v, kind, where) for v in value]
    else:
        value = _scalar(value, kind, where)
    _check(value, f, where)
    return value


def _check(value: Any, f: dataclasses.Field, where: str) -> None:
    m = f.metadata
    if m.get("length") is not None and len(value) != m["length"]:
        raise VaelabError(f"{where} must be {m['length']} values, got {len(value)} ({value})")
    choices = choices_of(f)
    if choices is not None and value not in choices:
        # a registry's choices (a function, read when asked) grow with the user's own parts
        from .registry import REGISTER_YOUR_OWN

        own = f" {REGISTER_YOUR_OWN}" if callable(m.get("choices")) else ""
        raise VaelabError(f"{where}: unknown choice {value!r}; choose one of {', '.join(choices)}{own}")
    for v in value if isinstance(value, list) else [value]:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        for key, ok, word in (
            ("ge", lambda a, b: a >= b, "at least"),
            ("gt", lambda a, b: a > b, "greater than"),
            ("le", lambda a, b: a <= b, "at most"),
            ("lt", lambda a, b: a < b, "less than"),
        ):
            if m.get(key) is not None and not ok(v, m[key]):
                raise VaelabError(f"{where} must be {word} {m[key]}, got {v}")


def validate_fields(part: Any, section: str) -> None:
    """Every field of a config section is of its type and within its declared constraints
    (values set through the Python API too); text from the command line is converted."""
    for f in dataclasses.fields(part):
        setattr(part, f.name, _coerce(getattr(part, f.name), f, field_name(section, f)))


# Published set-ups. Each is a partial config laid over the defaults.
# The IWAE paper's network and schedule (Burda et al. 2016, section 5 and appendix C), shared by
# its presets below: 784-200-200-50 tanh, Glorot init, the data-mean output bias, Adam 1e-3
# (beta2 0.999, eps 1e-4), batch 20, 3280 epochs in 8 stages of lr 1e-3 * 10^(-i/7).
_IWAE_MODEL: dict = {
    "hidden": [200, 200],
    "latent_dim": 50,
    "activation": "tanh",
    "likelihood": "bernoulli",
    "init": "glorot",
    "output_bias": "data-mean",
}
_IWAE_TRAIN: dict = {
    "optimizer": "adam",
    "lr": 1e-3,
    "adam_betas": [0.9, 0.999],
    "adam_eps": 1e-4,
    "batch_size": 20,
    "epochs": 3280,
    "lr_schedule": "iwae",
    "samples": 1,
}

PRESETS: dict[str, dict] = {
    # A conditional VAE on MNIST's labels (vaelab.models.conditional): q(z|x,y), p(x|z,y), a 2-D z
    # so the manifold of each digit can be drawn; its bounds are on -log p(x|y).
    "cvae-mnist": {
        "data": {"dataset": "mnist", "binarize": "dynamic"},
        "model": {"network": "cvae", "hidden": [500], "latent_dim": 2, "activation": "relu", "likelihood": "bernoulli"},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 100, "epochs": 20},
    },
    # VQ-VAE (van den Oord et al. 2017) on MNIST (vaelab.models.vqvae): an MLP encoder's 64 outputs as
    # 4 code vectors of 16 over a codebook of 512, the paper's loss with commitment 0.25, Adam 2e-4
    # (the paper's), batch 128; grey pixels as Bernoulli targets.
    "vqvae-mnist": {
        "data": {"dataset": "mnist", "binarize": "none"},
        "model": {
            "latent": "vq",
            "hidden": [500],
            "latent_dim": 64,
            "activation": "relu",
            "likelihood": "bernoulli",
            "options": {"codebook_size": 512, "code_dim": 16},
        },
        "train": {"objective": "vqvae", "optimizer": "adam", "lr": 2e-4, "batch_size": 128, "epochs": 20},
    },
    # pytorch/examples vae/main.py: 784-400-20 relu, grey targets, Adam 1e-3, batch 128, 10 epochs.
    "pytorch-examples": {
        "data": {"dataset": "mnist", "binarize": "none", "full_train": True},
        "model": {"hidden": [400], "latent_dim": 20, "activation": "relu", "likelihood": "bernoulli"},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": 10},
    },
    # Kingma & Welling (2014), section 5, MNIST: 500 tanh hidden units, 20 latents, Adagrad,
    # batch 100, L = 1, parameters initialised from N(0, 0.01^2), and the N(0, I) prior on the
    # parameters, which on the per-example bound is weight decay 1/N. The paper's data (Roweis's
    # copy) has 60000 training and 10000 test images, and its Figure 2 plots the test bound.
    "aevb-mnist": {
        "data": {"dataset": "mnist", "binarize": "dynamic", "full_train": True},
        "model": {"hidden": [500], "latent_dim": 20, "activation": "tanh", "likelihood": "bernoulli", "init": "normal"},
        "train": {
            "optimizer": "adagrad",
            "lr": 0.01,
            "batch_size": 100,
            "samples": 1,
            "weight_decay": 1 / 60000,
            "epochs": 100,
        },
    },
    # Burda, Grosse & Salakhutdinov (2016), one stochastic layer: 784-200-200-50 tanh, dynamic
    # binarization, batch 20, Adam(0.9, 0.999, eps 1e-4), lr 1e-3 * 10^(-i/7) for 3^i epochs,
    # Glorot & Bengio initialisation (section 5), the decoder's output bias at the logit of the
    # mean training image (their code, github.com/yburda/iwae). The paper trains on all 60000
    # training images and reports the test NLL at k = 5000.
    # Train the VAE column as is, the IWAE column with --objective iwae --k 50.
    "iwae-paper": {
        "data": {"dataset": "mnist", "binarize": "dynamic", "full_train": True},
        "model": _IWAE_MODEL,
        "train": _IWAE_TRAIN,
    },
    # The same paper's two stochastic layers (section 5, appendix C): x -> 200 -> 200 -> z1 (100)
    # -> 100 -> 100 -> z2 (50), the generative model mirrored, p(z2) = N(0, I); Monte-Carlo KL
    # (the pair has no closed form). The IWAE column: --objective iwae --k 50.
    "iwae-paper-2layer": {
        "data": {"dataset": "mnist", "binarize": "dynamic", "full_train": True},
        "model": {
            **_IWAE_MODEL,
            "latent": "gaussian-2layer",
            "latent_dim": 100,
            "options": {"z2_dim": 50, "layer_hidden": [100, 100]},
        },
        "train": {**_IWAE_TRAIN, "kl": "mc"},
    },
    # Tomczak & Welling (2018), the one-layer VampPrior VAE on dynamically binarized MNIST (their
    # code, github.com/jmtomczak/vae_vampprior): gated dense layers 784-300-300 -> z (40) and the
    # mirror, K = 500 pseudo-inputs, Adam 5e-4, batch 100, KL warm-up over 100 epochs, up to 2000
    # epochs with early stopping after 50 epochs without progress on the validation bound.
    "vampprior-paper": {
        "data": {"dataset": "mnist", "binarize": "dynamic"},
        "model": {
            "network": "gated",
            "hidden": [300, 300],
            "latent_dim": 40,
            "prior": "vampprior",
            "options": {"components": 500},
            "activation": "tanh",
            "likelihood": "bernoulli",
        },
        "train": {"optimizer": "adam", "lr": 5e-4, "batch_size": 100, "epochs": 2000, "kl": "mc", "warmup_epochs": 100},
    },
    # The same on Larochelle's fixed binarization (the IWAE paper's appendix D).
    "iwae-paper-static": {
        "data": {"dataset": "binarized_mnist", "binarize": "none", "full_train": True},
        "model": _IWAE_MODEL,
        "train": _IWAE_TRAIN,
    },
    # A small convolutional VAE on MNIST after the TensorFlow "Convolutional Variational
    # Autoencoder" tutorial (tensorflow.org/tutorials/generative/cvae) and the Keras VAE example:
    # two 3x3 stride-2 relu convolutions with 32 and 64 channels (28 -> 14 -> 7), the flattened
    # 7x7x64 map straight to q(z|x) (no dense hidden layer), the decoder the mirror image with
    # transposed convolutions, Bernoulli logits. Latent 16, Adam 1e-3 and batch 128 as
    # pytorch-examples, dynamic binarization (the library default), 10 epochs.
    "cnn-mnist": {
        "data": {"dataset": "mnist", "binarize": "dynamic"},
        "model": {
            "network": "conv",
            "channels": [32, 64],
            "hidden": [],
            "latent_dim": 16,
            "activation": "relu",
            "likelihood": "bernoulli",
        },
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": 10},
    },
    # Kingma & Welling (2014), Frey Face: Gaussian decoder with sigmoid means, 200 tanh units,
    # N(0, 0.01^2) initialisation, weight decay 1/N; trained on 1765 frames (vaelab's train +
    # valid), 200 held out as the test set (frames dealt into splits in a fixed random order).
    "aevb-frey": {
        "data": {"dataset": "frey_face", "binarize": "none", "full_train": True},
        "model": {"hidden": [200], "latent_dim": 2, "activation": "tanh", "likelihood": "gaussian", "init": "normal"},
        "train": {"optimizer": "adagrad", "lr": 0.01, "batch_size": 100, "weight_decay": 1 / 1765, "epochs": 200},
    },
    # Jang, Gu & Poole (2017), section 4.3 (generative modelling with a VAE): 20 categorical
    # variables of 10 classes on Larochelle's binarized MNIST, encoder 784-512-256-(20x10) and
    # decoder (20x10)-256-512-784, Adam 1e-3, batch 100, temperature max(0.5, exp(-3e-5 t))
    # updated every 1000 steps, analytic KL to the uniform prior. The hidden activation is ReLU:
    # the authors' notebook (github.com/ericjang/gumbel-softmax, "Categorical VAE.ipynb") builds
    # both nets with slim.fully_connected, whose default activation_fn is tf.nn.relu. 100 epochs
    # = 50000 steps, the notebook's NUM_ITERS. (The notebook also multiplies the lr by 0.9 every
    # 1000 steps; the paper does not mention it and this preset keeps 1e-3.)
    # Other rows of the paper's Table 1 on top of this preset: --hard (ST Gumbel-Softmax) and
    # --estimator score-function --baseline nvil (SF with NVIL's baseline and variance normalisation).
    "gumbel-softmax-paper": {
        "data": {"dataset": "binarized_mnist", "binarize": "none"},
        "model": {
            "network": "mlp",
            "latent": "categorical",
            "categorical_dims": [20, 10],
            "hidden": [512, 256],
            "activation": "relu",
            "likelihood": "bernoulli",
            "tau0": 1.0,
            "tau_min": 0.5,
            "anneal_rate": 3e-5,
            "anneal_every": 1000,
        },
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 100, "epochs": 100, "kl": "analytic", "samples": 1},
    },
}


def load_file(path: str | Path) -> dict:
    from .safefs import read_bytes

    path = Path(path)
    if str(path) in ("", "."):
        raise VaelabError("--config needs a file's path, got an empty one")
    if path.suffix not in (".toml", ".json"):
        raise VaelabError(f"config file {path} must end in .toml or .json")
    if not path.exists() and not path.is_symlink():
        raise VaelabError(f"config file {path} not found")
    raw = read_bytes(path, in_run=False)  # a regular file only: never waits on a FIFO
    try:
        text = raw.decode("utf-8")
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VaelabError(f"config file {path} is not valid {path.suffix[1:].upper()}: {e}") from None
    except RecursionError:
        raise VaelabError(f"config file {path} is nested too deeply to be a config; write a flat one") from None


def build_config(
    preset: str | None = None,
    file: str | Path | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    plugins: list[str] | tuple = (),
) -> Config:
    """Preset, then file, then overrides (nested by section), validated. `plugins` (module names
    or .py files) are imported first, so settings may name the parts they register."""
    cfg = Config.from_dict({"plugins": list(plugins)}, source="--plugin") if plugins else Config()
    if preset is not None:
        if preset not in PRESETS:
            raise VaelabError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        cfg = Config.from_dict(PRESETS[preset], cfg, f"preset {preset}")
    if file is not None:
        cfg = Config.from_dict(load_file(file), cfg, str(file))
    if overrides:
        cfg = Config.from_dict(overrides, cfg, "command line")
    cfg = cfg.validate()
    from .plugins import trust

    trust(cfg.plugins)  # the user named them: later commands on this run may import them
    return cfg


def cli_fields() -> Iterator[tuple[str, dataclasses.Field]]:
    """(section, dataclass field) for every field that has a command-line flag."""
    for section, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        for f in dataclasses.fields(cls):
            if f.metadata.get("flag"):
                yield section, f
