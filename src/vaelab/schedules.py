"""Schedules: values that depend only on the position in training (epoch, step), so a resumed
run recomputes them and continues exactly."""

from __future__ import annotations

import math

from .errors import VaelabError
from .registry import LR_SCHEDULES, register_lr_schedule

IWAE_STAGES = 8  # i = 0..7


def iwae_stage(epoch: int) -> tuple[int, int, int]:
    """(stage i, epoch within the stage, stage length 3^i) for a 0-based epoch of the IWAE
    paper's schedule: 3^i epochs at stage i, 3280 epochs in all; past the end stays at i = 7."""
    start = 0
    for i in range(IWAE_STAGES):
        if epoch < start + 3**i or i == IWAE_STAGES - 1:
            return i, epoch - start, 3**i
        start += 3**i
    raise AssertionError("unreachable")


def _iwae_describe(epoch: int) -> str:
    i, within, length = iwae_stage(epoch)
    return f"lr stage {i}/{IWAE_STAGES - 1}, epoch {within + 1} of {length}"


@register_lr_schedule("constant")
def _constant_lr(base_lr: float, epoch: int) -> float:
    return base_lr


@register_lr_schedule("iwae", describe=_iwae_describe)
def _iwae_lr(base_lr: float, epoch: int) -> float:
    return base_lr * 10 ** (-iwae_stage(epoch)[0] / 7)


def learning_rate(base_lr: float, schedule: str, epoch: int) -> float:
    """Learning rate for the 0-based `epoch`; a schedule (a plugin's, say) that gives no finite
    rate >= 0 is one line that names it."""
    lr = LR_SCHEDULES[schedule](base_lr, epoch)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise VaelabError(
            f"learning-rate schedule {schedule!r} gave {lr!r} for epoch {epoch}; "
            "a schedule must return a finite rate >= 0"
        )
    return float(lr)


def describe(schedule: str, epoch: int) -> str:
    return LR_SCHEDULES[schedule].describe(epoch)


def gumbel_temperature(step: int, tau0: float, tau_min: float, rate: float, every: int) -> float:
    """Temperature of the Gumbel-Softmax relaxation before the 0-based global `step`:

        tau = max(tau_min, tau0 * exp(-rate * t)),   t = step rounded down to a multiple of `every`,

    the schedule of Jang, Gu & Poole (2017, section 4.1 and their categorical VAE code: tau0 = 1,
    tau_min = 0.5, rate = 3e-5, updated every 1000 steps). A pure function of the step, so a
    resumed run continues the same schedule."""
    t = (step // every) * every
    return max(tau_min, tau0 * math.exp(-rate * t))
