"""Each epoch's metrics as TensorBoard scalars: the optional `tensorboard` extra.

    vaelab train ... --tensorboard        then   tensorboard --logdir RUN/tensorboard

One event stream per split (RUN/tensorboard/train, .../valid or .../test) with the same tag
for the same term, so TensorBoard draws train and valid `neg_elbo` in one chart. The trainer
calls the logger once per epoch after saving (Trainer.on_epoch); it never sees TensorBoard.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import VaelabError

SPLITS = ("train", "valid", "test")


def require_tensorboard() -> None:
    if importlib.util.find_spec("tensorboard") is None:
        raise VaelabError("--tensorboard needs the tensorboard package: pip install vaelab[tensorboard]")


def scalars(record: dict) -> dict[tuple[str, str], float]:
    """{(stream, tag): value} for the numbers of one metrics record: `valid_neg_elbo` is tag
    `neg_elbo` of stream `valid`; keys without a split (lr, tau, eval_seconds) go to `train`."""
    out = {}
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        split, _, rest = key.partition("_")
        out[(split, rest) if split in SPLITS and rest else ("train", key)] = float(value)
    return out


class TensorBoardLogger:
    """Callable(record): writes the record's scalars at step = epoch and flushes."""

    def __init__(self, log_dir: str | Path, start_epoch: int = 0):
        require_tensorboard()
        self.log_dir = Path(log_dir)
        self.purge = start_epoch + 1 if start_epoch else None  # a resumed run rewrites later epochs
        self.writers: dict = {}

    def _writer(self, stream: str):
        if stream not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            self.writers[stream] = SummaryWriter(str(self.log_dir / stream), purge_step=self.purge)
        return self.writers[stream]

    def __call__(self, record: dict) -> None:
        for (stream, tag), value in scalars(record).items():
            self._writer(stream).add_scalar(tag, value, record["epoch"])
        for w in self.writers.values():
            w.flush()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()
