"""The `vaelab` command line. Every error a user can cause is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from .config import MAX_SEED, PRESETS, Config, build_config, choices_of, cli_fields
from .errors import TrainingInterrupted, VaelabError


class _Formatter(argparse.HelpFormatter):
    """Adds an option's choices to its help, read from where they are declared (a registry, or
    the module that owns them) only when help is shown: reading them imports torch."""

    def _get_help_string(self, action):
        text = action.help or ""
        f = getattr(action, "vaelab_field", None)
        if f is not None and callable(f.metadata.get("choices")):
            text += f"; one of: {', '.join(choices_of(f) or [])}"
        lazy = getattr(action, "lazy_choices", None)
        if lazy is not None:
            text += f"; {'options' if action.dest == 'option' else 'one of'}: {', '.join(lazy()) or 'none'}"
        return text


def _all_options() -> list[str]:
    """Every registered part's options, "key (part)", for --option's help (`vaelab plugins` says more)."""
    from .registry import ALL, declared_options

    return [
        f"{key} ({registry.flag} {name})"
        for registry in ALL
        for name, part in registry.items()
        for key in declared_options(part)
    ]


def _show_gradvar_choices(action: argparse.Action, name: str) -> None:
    """Shows one of gradvar's own lists of choices (`ESTIMATORS`, `BASELINE_CHOICES`) in the
    option's help. They are declared and checked in vaelab.gradvar; the parser only shows them."""

    def read():
        from . import gradvar

        return getattr(gradvar, name)

    action.lazy_choices = read  # type: ignore[attr-defined]  # read by _Formatter


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kw)

    def error(self, message):  # one line, not usage + traceback-like noise
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


TRUST_HELP = (
    "import the plugin files the run's config.json names (a plugin is code: allow it only for a run "
    "whose code you trust); remembered for those files on this machine"
)


def _add_run_args(p, device=True, data_dir=True):
    p.add_argument("run", type=_path, help="run directory written by `vaelab train`")
    p.add_argument("--trust-plugins", action="store_true", help=TRUST_HELP)
    if device:
        p.add_argument(
            "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to compute (default: auto)"
        )
    if data_dir:
        p.add_argument(
            "--data-dir",
            default=None,
            type=_path,
            help="data directory (default: the run's, else $VAELAB_DATA_DIR, else ~/.cache/vaelab)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vaelab", description="Variational auto-encoders: train, evaluate, sample, encode, plot.")
    parser.add_argument("--version", action="version", version=f"vaelab {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser(
        "train",
        help="train a VAE into a run directory",
        description="Train a VAE. Settings: preset < --config file < flags.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="a published set-up to start from")
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="import a module (my_pkg.parts) or a .py file that registers your own parts with "
        "@vaelab.register_network, register_latent, register_prior, ... (repeatable; recorded in "
        "the run, and imported again by every later command on it)",
    )
    p.add_argument(
        "--config", metavar="FILE", type=_path, help="a .toml or .json file with [data], [model], [train] tables"
    )
    option = p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=_option,
        help="a setting a part declares for itself, e.g. components=500 for --prior vampprior, "
        "z2_dim=50 for --latent gaussian-2layer; VALUE is read as JSON (a number, a list like "
        "[100,100]) or else as text; repeatable; checked against the options of this run's parts",
    )
    option.lazy_choices = _all_options  # type: ignore[attr-defined]  # read by _Formatter
    for section, f in cli_fields():
        kw: dict[str, Any] = {"dest": f"{section}.{f.name}", "default": argparse.SUPPRESS, "help": _field_help(f)}
        if f.default is False:
            kw["action"] = "store_true"
        elif isinstance(f.metadata.get("choices"), list):
            kw["choices"] = f.metadata["choices"]  # registry choices are checked by the config
        action = p.add_argument(f.metadata["flag"], **kw)
        action.vaelab_field = f  # type: ignore[attr-defined]  # read by _Formatter
    p.add_argument(
        "--out", metavar="RUN", type=_path, help="run directory to create (default: runs/<preset or dataset>)"
    )
    p.add_argument(
        "--resume",
        metavar="RUN",
        type=_path,
        help="continue the run in RUN exactly where it stopped (--epochs may extend it)",
    )
    p.add_argument("--trust-plugins", action="store_true", help="with --resume: " + TRUST_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write each epoch's metrics for TensorBoard to RUN/tensorboard "
        "(needs: pip install vaelab[tensorboard])",
    )

    p = sub.add_parser("evaluate", help="neg_elbo, reconstruction and KL of a run on a split")
    _add_run_args(p)
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--samples", type=_positive, default=1, help="Monte-Carlo samples of z per point (default: 1)")
    p.add_argument(
        "--iw-samples",
        type=_positive,
        nargs="?",
        const=5000,
        default=None,
        metavar="K",
        help="also estimate log p(x) with K importance samples per point and report nll "
        "(K = 5000 when given without a value, as in the IWAE tables)",
    )
    p.add_argument(
        "--max-memory",
        type=_bytes,
        default="2G",
        metavar="SIZE",
        help="memory budget of one decoder pass for --iw-samples, e.g. 512M, 2G (default: 2G)",
    )
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--json", action="store_true", help="print only a JSON object on stdout")

    p = sub.add_parser("sample", help="a grid of images generated from the prior")
    _add_run_args(p, data_dir=False)
    p.add_argument("-n", type=int, default=64, help="number of images (default: 64; per class with --label)")
    p.add_argument("-o", "--output", default=None, type=_path, help="PNG file (default: RUN/samples.png)")
    p.add_argument(
        "--label",
        type=_labels,
        default=None,
        metavar="LIST",
        help="a conditional model's classes, e.g. 3, or 0,1,2 for one row of -n images per class",
    )
    p.add_argument("--seed", type=_seed, default=0)

    p = sub.add_parser("reconstruct", help="test images above their reconstructions")
    _add_run_args(p)
    p.add_argument("-n", type=int, default=32, help="number of images (default: 32)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("-o", "--output", default=None, type=_path, help="PNG file (default: RUN/reconstructions.png)")

    p = sub.add_parser(
        "encode",
        help="posterior parameters of a split (Gaussian: mu, logvar; categorical: probs,\n"
        "log_probs), with labels, to .npz",
    )
    _add_run_args(p)
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("-o", "--output", default=None, type=_path, help="NPZ file (default: RUN/z_<split>.npz)")

    p = sub.add_parser(
        "plot",
        help="pictures of what the VAE learned, as PNGs in the run directory",
        description="Write RUN/<picture>.png for each picture asked for: curves (training curves), "
        "samples (prior samples beside decoder means), reconstructions, manifold (the "
        "2-D latent manifold, or traversals of the most active dimensions), latents "
        "(test posterior means by class, or categorical class usage).",
    )
    _add_run_args(p)
    p.add_argument(
        "--what",
        default="curves,samples,reconstructions,manifold,latents",
        metavar="LIST",
        help="comma-separated pictures (default: curves,samples,reconstructions,manifold,latents)",
    )

    p = sub.add_parser(
        "report",
        help="one self-contained report.html about a run (pictures, metrics, config)",
        description="Write RUN/report.html: pictures (drawn first when missing or older than the "
        "weights), saved `vaelab evaluate` results, metrics per epoch and the config, "
        "in one file that opens from disk without network.",
    )
    _add_run_args(p)

    p = sub.add_parser(
        "explore",
        help="a local web page to move through the latent space and see the decoded image",
        description="Serve a page on 127.0.0.1 where moving a point over the 2-D latent plane, a "
        "slider per latent dimension, or a class per categorical variable decodes the "
        "image at once. Ctrl-C stops it.",
    )
    _add_run_args(p)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: 0, a free one)")

    p = sub.add_parser(
        "gradvar",
        help="mean and variance of each ELBO gradient estimator on a fixed batch",
        description="Draw each estimator's gradient of the negative ELBO many times on one fixed "
        "batch and summarise the variance of the encoder-parameter gradients.",
    )
    _add_run_args(p)
    _show_gradvar_choices(
        p.add_argument("--estimators", default="all", help="comma-separated estimator names, or all (default: all)"),
        "ESTIMATORS",
    )
    p.add_argument("--draws", type=_positive, default=200, help="gradient draws per estimator (default: 200)")
    p.add_argument("--batch-size", type=_positive, default=100, help="points in the fixed batch (default: 100)")
    p.add_argument("--split", default="train", choices=["train", "valid", "test"], help="(default: train)")
    _show_gradvar_choices(
        p.add_argument(
            "--baseline",
            default="auto",
            help="score-function control variate: auto (the run's own, else a moving average), none, or "
            "moving-average (fitted on the batch) (default: auto)",
        ),
        "BASELINE_CHOICES",
    )
    p.add_argument(
        "--tau", type=_positive_float, default=None, help="temperature (default: where the run's schedule ended)"
    )
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--json", action="store_true", help="print only a JSON object on stdout")

    p = sub.add_parser(
        "reproduce",
        help="run a published protocol to its end and put our number beside the paper's",
        description="Run a named published protocol (the paper's architecture, data, schedule and "
        "evaluation) to its end into --out, and write --out/reproduction.json with the "
        "paper's number beside ours. Running the same command again continues where it "
        "stopped. --list shows every protocol; --table prints the Markdown table of "
        "reproduction.json files.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a protocol or figure from --list")
    p.add_argument(
        "--out",
        metavar="DIR",
        action="append",
        type=_path,
        help="the reproduction's directory (default: runs/reproduce/NAME); for a figure, the folder "
        "that holds its members' directories (DIR/<member>) and the figure (default: "
        "runs/reproduce); with --list, directories (or folders of them) whose progress to show, "
        "repeatable",
    )
    p.add_argument(
        "--seeds",
        type=_seeds,
        default=None,
        metavar="LIST",
        help="comma-separated seeds, e.g. 0,1,2 (default: the protocol's); the row reports their mean "
        "± sd and every seed",
    )
    p.add_argument(
        "--epochs",
        type=_positive,
        default=None,
        metavar="N",
        help="a shortened protocol for smoke tests: N epochs, and the row is marked incomplete",
    )
    p.add_argument(
        "--draw",
        action="store_true",
        help="for a figure: run nothing, draw it from its members as far as they have got (unfinished "
        "panels marked incomplete)",
    )
    p.add_argument("--list", action="store_true", help="every protocol: paper, row, number, metric, cost")
    p.add_argument(
        "--table",
        nargs="+",
        type=_path,
        metavar="DIR",
        help="print the Markdown table of the reproduction.json files under these directories",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to compute (default: auto)")
    graphs = next(f for section, f in cli_fields() if section == "train" and f.name == "cuda_graphs")
    p.add_argument("--cuda-graphs", action="store_true", help=_field_help(graphs) + " (may differ between resumes)")
    p.add_argument(
        "--data-dir", default=None, type=_path, help="data directory (default: $VAELAB_DATA_DIR, else ~/.cache/vaelab)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "plugins",
        help="every registered part (vaelab's own and your plugins') with its options",
        description="List every part by kind (networks, latent families, priors, likelihoods, objectives, "
        "estimators, ...) with the module or file it comes from and the options it declares.",
    )
    p.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE_OR_FILE", help="import these parts first (repeatable)"
    )

    p = sub.add_parser("data", help="list or download data sets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION", parser_class=Parser)
    q = dsub.add_parser("list", help="each data set and whether its files are present and verified")
    q.add_argument("--data-dir", default=None, type=_path)
    q = dsub.add_parser("download", help="fetch a data set's files (checksums verified)")
    q.add_argument("name")
    q.add_argument("--data-dir", default=None, type=_path)
    return parser


def _field_help(f: dataclasses.Field) -> str:
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if isinstance(default, bool) or default is None:
        return f.metadata["help"]
    shown = ",".join(map(str, default)) if isinstance(default, list) else default
    return f"{f.metadata['help']} (default: {shown})"


def _bytes(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as a size such as 512M or 2G")
    return int(value)


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. components=500; got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _path(text: str) -> str:
    """A path argument: an empty string is a mistake (a shell variable that was not set), never
    "not given", which would fall back to a default folder or file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is a whole number in 0..2^63-1, got {text}")
    return value


def _labels(text: str) -> list[int]:
    try:
        labels = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected classes such as 3 or 0,1,2, got {text!r}") from None
    if any(k < 0 for k in labels):
        raise argparse.ArgumentTypeError(f"classes are whole numbers from 0, got {text!r}")
    return labels


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as comma-separated seeds such as 0,1,2") from None
    if not seeds or any(not 0 <= s <= MAX_SEED for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be integers in 0..2^63-1, got {text!r}")
    return seeds


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vaelab")
    except PackageNotFoundError:
        return "unknown"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def cmd_train(args) -> int:
    from .api import train

    if args.trust_plugins and not args.resume:
        raise VaelabError("--trust-plugins allows the plugins of a saved run: give it with --resume RUN")

    overrides: dict[str, dict] = {}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".")
            overrides.setdefault(section, {})[name] = value
    if args.option:
        overrides.setdefault("model", {})["options"] = dict(args.option)
    if args.resume:
        from .runs import RESUMABLE

        # --option may change an option its part declares resumable (checked by check_resumable)
        changed = [
            f"{s}.{n}"
            for s, names in overrides.items()
            for n in names
            if f"{s}.{n}" not in RESUMABLE | {"model.options"}
        ]
        if args.preset or args.config or changed or args.out:
            raise VaelabError(
                "--resume continues a run with its saved settings; only --epochs, --device, "
                "--compile, --cuda-graphs, --data-dir and a resumable --option may be given with it "
                f"(got {', '.join(changed) or '--preset/--config/--out'})"
            )
        if args.plugin:
            raise VaelabError("--resume imports the plugins the run was trained with; drop --plugin")
        from .checkpoint import load_config

        out = Path(args.resume)
        cfg = Config.from_dict(overrides, load_config(out), "command line").validate()
    else:
        cfg = build_config(args.preset, args.config, overrides, plugins=args.plugin)
        from .data.custom import run_name  # folder:/npy: paths -> their stem, not a path under runs/

        out = Path(args.out or f"runs/{args.preset or run_name(cfg.data.dataset)}")
    run = train(
        cfg,
        out,
        resume=bool(args.resume),
        overwrite=args.overwrite,
        progress=not args.no_progress,
        log=_log,
        tensorboard=args.tensorboard,
    )
    _log(f"run saved in {run}  (see: vaelab plot {run}; vaelab evaluate {run})")
    return 0


def cmd_evaluate(args) -> int:
    from .api import evaluate

    result = evaluate(
        args.run,
        args.split,
        samples=args.samples,
        iw_samples=args.iw_samples,
        max_memory=args.max_memory,
        device=args.device,
        data_dir=args.data_dir,
        seed=args.seed,
        progress=not args.json or sys.stderr.isatty(),
    )
    from .distributed import context

    if not context().main:  # under torchrun, rank 0 alone reports
        return 0
    _save_evaluation(args, result)
    if args.json:
        print(json.dumps(result))
        return 0
    bounds = result["bounds"]
    print(f"{result['dataset']} {args.split} ({result['n']} points), nats per example, bounds on {bounds}:")
    print(
        f"  neg_elbo {result['neg_elbo']:.2f} ± {result['neg_elbo_stderr']:.2f}  "
        f"(rec {result['rec']:.2f}, kl {result['kl']:.2f})"
    )
    if "nll" in result:
        print(
            f"  nll      {result['nll']:.2f} ± {result['nll_stderr']:.2f}  "
            f"({bounds}, importance sampled, k = {result['iw_samples']})"
        )
    if "active_units" in result:  # continuous stochastic latents only
        print(f"  active units {result['active_units']}")
    for key, value in result.get("latent_statistics", {}).items():  # the latent family's own numbers
        print(f"  {key.replace('_', ' ')} {value:.4g}")
    return 0


def cmd_sample(args) -> int:
    from .api import sample
    from .viz import save_grid

    _check_count(args.n * len(args.label or [0]))
    _check_output(args.output)
    images = sample(args.run, args.n, seed=args.seed, device=args.device, label=args.label)
    path = save_grid(images, args.output or Path(args.run) / "samples.png", ncol=args.n if args.label else None)
    print(path)
    return 0


def cmd_reconstruct(args) -> int:
    from .api import reconstruct
    from .viz import save_recon

    _check_count(args.n)
    _check_output(args.output)
    x, r = reconstruct(args.run, args.split, args.n, device=args.device, data_dir=args.data_dir)
    print(save_recon(x, r, args.output or Path(args.run) / "reconstructions.png"))
    return 0


def cmd_encode(args) -> int:
    from .api import encode, save_npz

    _check_output(args.output)
    arrays = encode(args.run, args.split, device=args.device, data_dir=args.data_dir)
    print(save_npz(args.output or Path(args.run) / f"z_{args.split}.npz", arrays))
    return 0


def cmd_gradvar(args) -> int:
    from .gradvar import format_table, parse_estimators, run_gradvar

    result = run_gradvar(
        args.run,
        parse_estimators(args.estimators),
        args.draws,
        args.batch_size,
        split=args.split,
        baseline=args.baseline,
        tau=args.tau,
        seed=args.seed,
        device=args.device,
        data_dir=args.data_dir,
        progress=not args.json and sys.stderr.isatty(),
    )
    print(json.dumps(result) if args.json else format_table(result))
    return 0


MAX_PICTURE_IMAGES = 10000


def _check_count(n: int) -> None:
    """-n of a picture: at least one image, and few enough to draw in one PNG."""
    if not 1 <= n <= MAX_PICTURE_IMAGES:
        raise VaelabError(f"-n must be between 1 and {MAX_PICTURE_IMAGES} images for one picture, got {n}")


def _check_output(path: str | None) -> None:
    """-o FILE: refused before any work when it is a link or a special file (/dev/null, a FIFO)."""
    if path is not None:
        from .safefs import check_output

        check_output(path)


def _save_evaluation(args, result: dict) -> None:
    """Keep the result in RUN/evaluation_<split>.json for `vaelab report`; a run folder that
    cannot be written to (read-only, a full disk) only costs a warning: the result is still
    printed."""
    from .api import save_evaluation

    try:
        save_evaluation(args.run, result, samples=args.samples, seed=args.seed)
    except (OSError, VaelabError) as e:
        _log(f"vaelab: warning: the result below was not saved in {args.run} ({e})")


def cmd_plot(args) -> int:
    from .api import plot

    for path in plot(args.run, what=args.what, device=args.device, data_dir=args.data_dir):
        print(path)
    return 0


def cmd_report(args) -> int:
    from .api import report

    print(report(args.run, device=args.device, data_dir=args.data_dir))
    return 0


def cmd_explore(args) -> int:
    from .api import explorer
    from .viz.explore import make_server

    if not 0 <= args.port < 65536:
        raise VaelabError(f"--port must be in 0..65535, got {args.port}")
    explorer_ = explorer(args.run, device=args.device, data_dir=args.data_dir)
    try:
        server = make_server(explorer_, args.port, title=Path(args.run).resolve().name)
    except OSError as e:
        raise VaelabError(
            f"cannot listen on 127.0.0.1:{args.port} ({e.strerror or e}); "
            "pick another --port, or --port 0 for a free one"
        ) from None
    print(f"vaelab explore: open {server.url}  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("vaelab explore: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def cmd_plugins(args) -> int:
    from . import plugins
    from .registry import ALL, declared_options, load_builtins

    plugins.load(args.plugin)
    plugins.trust(args.plugin)
    load_builtins()
    from_plugin = {module.__name__: spec for spec, module in plugins.loaded().items()}
    for registry in ALL:
        print(f"{registry.plural} ({registry.flag or registry.kind}):")
        for name, part in registry.items():
            origin = getattr(getattr(part, "fn", part), "__module__", "") or ""
            print(f"  {name}" + (f"  (plugin {from_plugin[origin]})" if origin in from_plugin else ""))
            for key, option in declared_options(part).items():
                resumable = "; may change on --resume" if option.resumable else ""
                print(f"      --option {key}=VALUE  {option.describe()}{resumable}")
    return 0


def cmd_data(args) -> int:
    from . import data

    if args.data_command == "list":
        print(data.format_status(args.data_dir))
    else:
        if args.name not in data.DATASETS:
            raise VaelabError(f"unknown dataset {args.name!r}; choose one of {', '.join(data.DATASETS)}")
        for path in data.download_dataset(args.name, args.data_dir):
            print(path)
    return 0


def cmd_reproduce(args) -> int:
    from .reproduce import find_records, list_protocols, markdown_table, run_named

    modes = sum(map(bool, (args.list, args.table, args.name)))
    if modes != 1:
        raise VaelabError("give one of: a protocol NAME, --list, or --table DIR (see `vaelab reproduce --list`)")
    if args.list:
        sys.stdout.write(list_protocols(args.out or []))
        return 0
    if args.table:
        records = find_records(args.table)
        if not records:
            raise VaelabError(f"no reproduction.json under {', '.join(args.table)}")
        sys.stdout.write(markdown_table(records))
        return 0
    if args.out and len(args.out) > 1:
        raise VaelabError("give one --out directory for a reproduction")
    from .reproduce import FIGURES

    # a figure's members live beside each other (DIR/<member>), so figures that share a run share it
    out = Path(args.out[0]) if args.out else Path("runs/reproduce") / ("" if args.name in FIGURES else args.name)
    run_named(
        args.name,
        out,
        draw_only=args.draw,
        seeds=args.seeds,
        epochs=args.epochs,
        data_dir=args.data_dir,
        device=args.device,
        cuda_graphs=args.cuda_graphs,
        progress=not args.no_progress,
        log=_log,
    )
    return 0


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "encode": cmd_encode,
    "plot": cmd_plot,
    "report": cmd_report,
    "explore": cmd_explore,
    "data": cmd_data,
    "gradvar": cmd_gradvar,
    "reproduce": cmd_reproduce,
    "plugins": cmd_plugins,
}


def _preload_plugins(argv: list[str]) -> None:
    """`vaelab train --plugin X.py --help` lists X's parts: the plugins named on the command line
    are imported before argparse answers --help (a plugin that fails is one line, exit 2)."""
    if "-h" not in argv and "--help" not in argv:
        return
    specs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--plugin"]
    specs += [a.split("=", 1)[1] for a in argv if a.startswith("--plugin=")]
    if specs:
        from . import plugins

        try:
            plugins.load(specs)
        except VaelabError as e:
            print(f"vaelab: error: {e}", file=sys.stderr)
            sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    _preload_plugins(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "trust_plugins", False) and (getattr(args, "run", None) or args.resume):
            from .runs import trust_plugins

            trust_plugins(getattr(args, "run", None) or args.resume, log=_log)
        return COMMANDS[args.command](args)
    except VaelabError as e:
        print(f"vaelab: error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(f"vaelab: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("vaelab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vaelab data list | head -1`: the reader has gone; nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        from .safefs import USER_ERRNOS, from_os_error

        if e.errno not in USER_ERRNOS:  # anything else is a bug: keep its traceback
            return _internal_error()
        print(f"vaelab: error: {from_os_error(e)}", file=sys.stderr)
        return 2
    except Exception:
        return _internal_error()


def _internal_error() -> int:
    """Not an error a user can cause: a bug. Keep the traceback; name the plugin it happened in
    (its author's to fix), or ask for a report to vaelab."""
    import traceback

    from .plugins import plugin_frame

    traceback.print_exc()
    frame = plugin_frame(sys.exc_info()[2])
    if frame is not None:
        spec, filename, line = frame
        print(
            f"vaelab: error in plugin {spec} ({filename}:{line}), not in vaelab: see the traceback above; a "
            "run keeps its last checkpoint, so fix the plugin and resume",
            file=sys.stderr,
        )
        return 1
    print(
        f"vaelab: internal error: this is a bug in vaelab {_version()}, not in your input; please report "
        "it with the command you ran and the traceback above",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
