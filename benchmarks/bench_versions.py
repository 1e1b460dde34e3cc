"""Milliseconds per training step of two vaelab source trees, measured alternately (A B A B ...)
in fresh processes, so a change can be shown to cost nothing on this noisy machine.

    git worktree add ../before <commit>
    VAELAB_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_versions.py ../before/src src \
        [--presets pytorch-examples,iwae-paper-k50] [--rounds 5] [--steps 200]

Each process builds the preset's Trainer (the data on the device, the model, the optimizer),
runs `--warmup` steps, then times `--steps` steps of the real training loop (Trainer._train_epoch,
stopped through its on_step hook) and prints the time per step. `iwae-paper-k50` is the
`iwae-paper` preset trained with the IWAE objective, k = 50 (the paper's IWAE column). The median
of each tree's rounds and their ratio are printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import machine

PRESETS = {
    "pytorch-examples": ("pytorch-examples", {}),
    "iwae-paper-k50": ("iwae-paper", {"objective": "iwae", "k": 50}),
}

CHILD = r"""
import json, sys, tempfile, time
from vaelab.config import build_config
from vaelab.training import Trainer

preset, train, warmup, steps = json.loads(sys.argv[1])
cfg = build_config(preset, overrides={"train": {**train, "epochs": 1, "device": "cpu"}})
with tempfile.TemporaryDirectory() as out:
    trainer = Trainer(cfg, out, progress=False, log=lambda m: None)
    marks = []

    def hook(t):
        marks.append(time.perf_counter())
        t.stop_requested = len(marks) >= warmup + steps

    trainer.on_step = hook
    trainer._train_epoch()
print(json.dumps({"ms_per_step": (marks[-1] - marks[warmup - 1]) / steps * 1e3}))
"""


def run(src: str, preset: str, train: dict, warmup: int, steps: int) -> float:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([preset, train, warmup, steps])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["ms_per_step"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="the first tree's src folder (before)")
    p.add_argument("b", help="the second tree's src folder (after)")
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    results = {}
    for name in args.presets.split(","):
        preset, train = PRESETS[name]
        times: dict[str, list[float]] = {"a": [], "b": []}
        for _ in range(args.rounds):
            for key, src in (("a", args.a), ("b", args.b)):
                times[key].append(run(src, preset, train, args.warmup, args.steps))
        ma, mb = statistics.median(times["a"]), statistics.median(times["b"])
        ratios = [b / a for a, b in zip(times["a"], times["b"])]
        results[name] = {
            "a_ms_per_step": round(ma, 3),
            "b_ms_per_step": round(mb, 3),
            "b_over_a_median_of_pairs": round(statistics.median(ratios), 3),
            "a_all": [round(t, 3) for t in times["a"]],
            "b_all": [round(t, 3) for t in times["b"]],
        }
    print(json.dumps({"machine": machine(), "a": args.a, "b": args.b, "rounds": args.rounds, **results}, indent=1))


if __name__ == "__main__":
    main()
