"""What a published protocol is (the paper's number, how it was measured, the run that reproduces
it) and what a reproduced figure is, with their registries. The declarations are in
`protocols.py` (imported by the package), running them in `run.py`, drawing in `figures.py`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, build_config
from ..errors import VaelabError

# Where every protocol's cpu_seconds_per_epoch was measured (benchmarks/RESULTS.md, machine D):
# `vaelab reproduce --list` names it under the table, so a figure is never read as another CPU's.
COST_MACHINE = (
    "one thread of the project's 2-core Intel Xeon (AVX-512), nothing else running, 2026-12-02;"
    " the same machine ran up to 3 times slower on 2026-12-03, and an AMD EPYC (AVX2) 2.4-2.8 times"
)


@dataclass(frozen=True)
class Citation:
    """Where a number is printed: authors, year, title, the table or figure, its row and column."""

    authors: str
    year: int
    title: str
    where: str  # "Table 1", "Figure 2"
    row: str
    column: str

    def short(self) -> str:
        """'Kingma & Welling 2014, Figure 2', 'Burda et al. 2016, Table 1'."""
        names = [n.split()[-1] for n in self.authors.replace(" & ", ", ").split(", ")]
        who = names[0] if len(names) == 1 else " & ".join(names) if len(names) == 2 else f"{names[0]} et al."
        return f"{who} {self.year}, {self.where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "authors": self.authors,
            "year": self.year,
            "title": self.title,
            "where": self.where,
            "row": self.row,
            "column": self.column,
        }


@dataclass(frozen=True)
class Metric:
    """A figure measured on a trained model, named as the papers name it, in nats per example.

    name:  `nll` (importance-sampled, -mean L_k with k = `k`), `neg_elbo` (of the model as
           evaluated: the discrete model for categorical latents), `neg_elbo_relaxed` (the
           Gumbel-Softmax relaxation at the last training temperature, which is the bound a
           relaxed model's training code prints).
    split: the data split it is measured on; `k` the importance samples of `nll`."""

    name: str
    split: str = "test"
    k: int | None = None

    NAMES = ("nll", "neg_elbo", "neg_elbo_relaxed")

    def __post_init__(self):
        if self.name not in self.NAMES:
            raise ValueError(f"unknown metric {self.name!r}")
        if (self.name == "nll") != (self.k is not None):
            raise ValueError("k is given for nll, and only for nll")

    @property
    def key(self) -> str:
        """A stable name for the figure, e.g. `nll_k5000_test`, `neg_elbo_test`."""
        return f"{self.name}_k{self.k}_{self.split}" if self.k else f"{self.name}_{self.split}"

    def describe(self) -> str:
        detail = [f"k = {self.k}"] if self.k else []
        return f"{self.name} ({', '.join(detail + [self.split])})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "k": self.k, "description": self.describe()}


@dataclass(frozen=True)
class Protocol:
    """One number of one paper and the whole recipe that reproduces it.

    The run is the preset `preset` with `overrides` (nested by config section), trained for the
    preset's epochs with each seed, then measured by `metric` (and the `also` metrics, reported
    beside it). `paper_value` is the paper's figure in the same units and sign as the metric
    (None for a row that reproduces a picture only). `cpu_seconds_per_epoch` is the cost of an epoch
    (its training steps and the bound it ends with) measured on COST_MACHINE
    (benchmarks/bench_protocols.py), and
    `notes` says where the paper leaves a detail open and what was chosen."""

    name: str
    citation: Citation
    paper_value: float | None
    metric: Metric
    preset: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    cpu_seconds_per_epoch: float | None = None
    also: tuple[Metric, ...] = ()
    notes: str = ""
    figure: str | None = None  # the reproduced figure this run is drawn in (figures.py)
    figure_xlim: tuple[float, float] | None = None  # that figure's x-axis (training examples)
    paper_also: dict[str, float] = field(default_factory=dict)  # the paper's values of `also` metrics, by key

    def config(
        self,
        seed: int,
        *,
        epochs: int | None = None,
        data_dir: str | None = None,
        device: str = "auto",
        cuda_graphs: bool = False,
    ) -> Config:
        """The config of one seed's run. `device` and `cuda_graphs` say how to compute, not what:
        a run may change them when it resumes (runs.RESUMABLE)."""
        over = {section: dict(values) for section, values in self.overrides.items()}
        over.setdefault("train", {}).update(seed=seed, device=device, cuda_graphs=cuda_graphs)
        if epochs is not None:
            over["train"]["epochs"] = epochs
        if data_dir is not None:
            over.setdefault("data", {})["data_dir"] = data_dir
        return build_config(self.preset, overrides=over)

    @property
    def epochs(self) -> int:
        """Epochs of the whole protocol."""
        return self.config(self.seeds[0]).train.epochs

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return (self.metric, *self.also)

    def binarization(self) -> str:
        """How the data were made binary, in words, for the table."""
        d = self.config(self.seeds[0]).data
        if d.dataset == "binarized_mnist":
            return "Larochelle's fixed binarization"
        if d.dataset == "frey_face":
            return "continuous (Gaussian decoder)"
        return {
            "dynamic": "dynamic binarization (evaluated on one fixed draw)",
            "static": "one fixed seeded binarization",
            "none": "grey values as Bernoulli targets",
        }[d.binarize]


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add a protocol to the registry that `vaelab reproduce` and `--list` read."""
    if protocol.name in PROTOCOLS:
        raise ValueError(f"protocol {protocol.name!r} is declared twice")
    PROTOCOLS[protocol.name] = protocol
    return protocol


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise VaelabError(f"unknown protocol {name!r}; `vaelab reproduce --list` shows them all") from None


def all_protocols() -> list[Protocol]:
    return list(PROTOCOLS.values())


@dataclass(frozen=True)
class Figure:
    """A figure drawn from several protocols' runs, in the paper's layout."""

    name: str
    citation: Citation
    members: tuple[str, ...]
    draw: Callable[[dict[str, Path], Path], Path]  # member directories -> the PNG written
    caption: str = ""


FIGURES: dict[str, Figure] = {}


def register_figure(figure: Figure) -> Figure:
    if figure.name in FIGURES:
        raise ValueError(f"figure {figure.name!r} is declared twice")
    FIGURES[figure.name] = figure
    return figure
