"""The training loop: model, objective, optimizer, batches. Nothing model-specific lives here.

Speed: the whole training set is one tensor on the device and batches are slices of a random
permutation; the loop never waits for the device except every `SYNC_EVERY` steps, when the
progress bar shows the running `neg_elbo` and the loss is checked for NaN. On a CPU, denormal
floats are flushed to zero on every thread while training (denormals.py).

Safety: a checkpoint is written atomically after the first and the last epoch, and in between
after any epoch that ends SAVE_EVERY seconds after the last one (every epoch, when epochs are
long). Ctrl-C finishes the current step,
saves the exact position (permutation, step, RNG state) and exits; `--resume` then continues
to the same final weights as an uninterrupted run. A NaN or infinite loss stops the run
without saving, so the last good checkpoint stays intact.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import distributed
from .config import Config
from .dataprep import eval_split_for, load_inputs
from .denormals import flush_denormals
from .distributed import resolve_device
from .errors import TrainingInterrupted, VaelabError
from .evaluation import evaluate_elbo
from .klcontrol import kl_weight
from .model import VAE
from .objectives import StepContext
from .registry import ESTIMATORS, NETWORKS, OBJECTIVES, OPTIMIZERS
from .resources import check_training
from .schedules import describe, learning_rate

SYNC_EVERY = 50
# A checkpoint after the first and the last epoch, on a stop, and otherwise after the epoch that
# ends SAVE_EVERY seconds after the last save: short epochs (Frey Face, 16 steps) would spend
# more time writing checkpoints than training. The epoch lines are thinned the same way.
SAVE_EVERY = 30.0
LOG_EVERY = 5.0


class NonFiniteLoss(VaelabError):
    pass


def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"rng/cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng/cuda"] = torch.cuda.get_rng_state(device)
    return out


def _set_rng(extra: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(extra["rng/cpu"])
    if device.type == "cuda" and "rng/cuda" in extra:
        torch.cuda.set_rng_state(extra["rng/cuda"], device)


@contextmanager
def _catch_stop_signals(trainer: Trainer):
    """The first Ctrl-C (SIGINT) or SIGTERM (what `kill` and a batch scheduler send before their
    SIGKILL) asks the loop to stop after this step and save; a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        print(f"\nvaelab: stopping after this step and saving ({again} again to abort without saving)", file=sys.stderr)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Objective(torch.nn.Module):
    """The model and its objective as one module whose forward returns (loss, terms): what
    DistributedDataParallel wraps, so its gradient hooks see every parameter the loss uses."""

    def __init__(self, model: VAE, objective, ctx: StepContext):
        super().__init__()
        self.model, self.objective, self.ctx = model, objective, ctx

    def forward(self, x):
        return self.objective(self.model, x, self.ctx)


class _CompiledOrEager:
    """torch.compile'd step function that falls back to eager, with one warning, when the
    first compilation fails (no C++ compiler, an unsupported op, an old GPU). With
    cuda_graphs, inductor's reduce-overhead mode records the step's kernels once per batch
    shape and replays them, so a small model's step costs a few launches instead of hundreds."""

    def __init__(self, module: torch.nn.Module, log, cuda_graphs: bool = False):
        self.eager, self.log, self.cuda_graphs = module, log, cuda_graphs
        self.compiled = torch.compile(module, mode="reduce-overhead" if cuda_graphs else None)
        self.works: bool | None = None

    def __call__(self, x):
        if self.works is False:
            return self.eager(x)
        try:
            if self.cuda_graphs:  # the previous step's graph outputs are no longer needed
                torch.compiler.cudagraph_mark_step_begin()
            out = self.compiled(x)
        except Exception as e:
            if self.works:
                raise
            self.log(
                f"vaelab: warning: {'--cuda-graphs' if self.cuda_graphs else '--compile'} failed "
                f"({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                "training without it"
            )
            self.works = False
            return self.eager(x)
        self.works = True
        return out


def _objective_name(cfg: Config) -> str:
    """How messages name the training objective: --objective NAME, and the estimator it uses."""
    t = cfg.train
    obj = OBJECTIVES[t.objective]
    origin = getattr(obj.fn, "__module__", "")
    where = f" (from {sys.modules[origin].__file__})" if origin.startswith("vaelab_plugin_") else ""
    with_estimator = f" with --estimator {t.estimator}" if obj.uses_estimator else ""
    return f"--objective {t.objective}{with_estimator}{where}"


def check_step_output(cfg: Config, out, batch: int) -> None:
    """The objective's contract, checked on the first step (shapes only: nothing waits for the
    device): (loss, terms), a scalar loss with a gradient, and per-example terms (B,) that hold
    `neg_elbo`, the bound every run reports."""
    name = _objective_name(cfg)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise VaelabError(f"{name} must return (loss, terms), got {type(out).__name__}; see vaelab.objectives")
    loss, terms = out
    if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise VaelabError(f"{name} returned a loss of shape {shape}; it must be one number (a scalar tensor)")
    if not loss.requires_grad:
        raise VaelabError(f"{name} returned a loss with no gradient; nothing would train (was it detached?)")
    if not isinstance(terms, dict) or "neg_elbo" not in terms:
        keys = sorted(terms) if isinstance(terms, dict) else type(terms).__name__
        raise VaelabError(
            f"{name} returned terms {keys}; they must include neg_elbo, the per-example negative ELBO every "
            "run reports (with rec and kl beside it where they exist)"
        )
    for key, value in terms.items():
        if not (isinstance(value, torch.Tensor) and tuple(value.shape) == (batch,)):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise VaelabError(f"{name} returned term {key!r} of shape {shape}; terms are per example: ({batch},)")


def check_encoder_gradient(cfg: Config, model: VAE) -> None:
    """After the first backward pass: an encoder that no gradient reaches would silently never
    train (a path-wise estimator through a latent with no path-wise gradient, a detached code)."""
    grads = [p.grad for p in model.encoder.parameters() if p.requires_grad]
    if grads and (
        all(g is None for g in grads) or not bool(torch.stack([g.abs().sum() for g in grads if g is not None]).sum())
    ):
        raise VaelabError(
            f"the encoder receives no gradient from {_objective_name(cfg)} and --latent {cfg.model.latent}: "
            "nothing flows back from the loss through z, so the encoder would never train; use an estimator "
            "that reaches it (--estimator score-function), or a latent family with a path-wise gradient"
        )


def check_cuda_graphs(cuda_graphs: bool, device: torch.device, distributed: bool = False) -> None:
    """CUDA graphs are recorded on one GPU: a one-line error elsewhere."""
    if cuda_graphs and (device.type != "cuda" or distributed):
        raise VaelabError(
            "--cuda-graphs needs one CUDA GPU and no torchrun; leave it off here "
            "(--compile is its CPU and multi-process counterpart)"
        )


def _epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The order of examples in an epoch: a function of (seed, epoch) alone, so every rank of a
    distributed run agrees on it and a resumed run recomputes it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).to(device)


class Trainer:
    def __init__(self, cfg: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True, log=None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = distributed.init(cfg.train.device)
        self.device = distributed.device_for(self.dist, resolve_device(cfg.train.device))
        self.progress = progress and self.dist.main
        self.log = (log or (lambda msg: print(msg, file=sys.stderr))) if self.dist.main else (lambda msg: None)
        self.stop_requested = False
        self.contract_checked = False  # the objective's output and the encoder's gradient, on the first step
        self.on_step = None  # optional callback(trainer) after every step (tests use it to interrupt)
        self.on_epoch: list = []  # callbacks(record) after each epoch (e.g. TensorBoard scalars)
        self.on_save: list = []  # callbacks(trainer) after each checkpoint (vaelab.runs moves a new run in place)
        self.saved_epoch: int | None = None  # the epoch of the last checkpoint on disk
        self.continue_with: str | None = None  # the command that continues the run, if not `train --resume`

        shape = cfg.model.input_shape if resume else None  # a resumed run's data must not have changed
        if not resume:
            cfg.data.split_version = None  # recorded below, from the data this run trains on
        train = load_inputs(cfg.data, "train", training=True, expect_shape=shape)
        self.eval_split = eval_split_for(cfg.data, cfg.train.watch)
        evals = load_inputs(cfg.data, self.eval_split, expect_shape=shape)
        cfg.model.input_shape = list(train.images.shape[1:])
        cfg.data.split_version = train.split_version
        self.train_x = train.images.to(self.device)
        self.dynamic = train.dynamic
        # a distributed run evaluates each rank's share of the points and all-reduces the sums
        share = self.dist.local_slice(evals.images.shape[0])
        self.eval_x = evals.images[share].to(self.device)
        # a conditional network trains on (x, y): the labels travel with the images, on the device
        self.train_y = self.eval_y = None
        if NETWORKS[cfg.model.network].conditional:
            if train.labels is None or evals.labels is None:
                raise VaelabError(
                    f"--model {cfg.model.network} is conditional: it needs labelled data, and {cfg.data.dataset} "
                    "has no labels (a folder with one sub-folder per class gives them)"
                )
            n_classes = int(train.labels.max()) + 1
            if resume and cfg.model.n_classes != n_classes:
                raise VaelabError(
                    f"the labels of {cfg.data.dataset} now have {n_classes} classes, but this run was trained on "
                    f"{cfg.model.n_classes}: the data changed after training; restore it, or train a new run"
                )
            cfg.model.n_classes = max(n_classes, 2)
            self.train_y = train.labels.long().to(self.device)
            self.eval_y = evals.labels[share].long().to(self.device)

        check_training(cfg, self.device)  # before allocating: a size that cannot fit is one clear line
        torch.manual_seed(cfg.train.seed)
        self.model = VAE(cfg.model).to(self.device)
        if cfg.model.output_bias == "data-mean":  # (a resumed run loads its weights over it)
            self.model.init_output_bias(train.images.mean(0))
        self.optimizer = OPTIMIZERS[cfg.train.optimizer](self.model.parameters(), cfg.train, self.model.device)
        if self.dist.enabled:  # the noise (z, dynamic binarization) differs between ranks
            torch.manual_seed(cfg.train.seed + 7919 * self.dist.rank)
        self.ctx = StepContext(
            cfg.train,
            n_train=self.train_x.shape[0],
            steps_per_epoch=math.ceil(self.train_x.shape[0] / cfg.train.batch_size),
        )
        if ESTIMATORS[cfg.train.estimator].discrete_only and not self.model.latent.discrete:
            raise VaelabError(
                f"--estimator {cfg.train.estimator} is for discrete latents (--latent categorical); "
                f"--latent {cfg.model.latent} is continuous: use the reparameterized gradient"
            )
        if cfg.train.kl == "analytic" and not self.model.has_analytic_kl:
            self.model.analytic_kl(None)  # the one-line error that names the pair and says --kl mc
        step_fn: torch.nn.Module = _Objective(self.model, OBJECTIVES[cfg.train.objective], self.ctx)
        if self.dist.enabled:
            step_fn = torch.nn.parallel.DistributedDataParallel(step_fn)
        check_cuda_graphs(cfg.train.cuda_graphs, self.device, self.dist.enabled)
        compiled = cfg.train.compile or cfg.train.cuda_graphs
        self.step_fn = _CompiledOrEager(step_fn, self.log, cfg.train.cuda_graphs) if compiled else step_fn
        # Mixed precision: autocast runs the networks in bf16/fp16 (the model returns float32
        # parameters, so densities and KL stay float32); fp16 needs a gradient scaler.
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.precision)
        if cfg.train.precision == "fp16" and self.device.type != "cuda":
            raise VaelabError("--precision fp16 needs a CUDA GPU; use --precision bf16 on a CPU")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.precision == "fp16")
        self.epoch, self.step, self.pos = 0, 0, 0  # completed epochs, steps; position in epoch
        self.sums = self._zero_sums()
        self.history: list[dict] = []
        # early stopping: the best watched neg_elbo so far, its epoch, and whether training stopped
        self.best: dict = {"value": None, "epoch": 0, "stopped": False}
        self.best_weights: dict[str, torch.Tensor] = {}
        if resume:
            state, extra = ckpt.load_resume(self.run_dir, self.model, self.optimizer)
            self.epoch, self.step, self.pos = state["epoch"], state["step"], state["pos"]
            if "scaler" in state:
                self.scaler.load_state_dict(state["scaler"])
            self.sums, self.history = state["sums"], state["history"]
            self.best = state.get("early", self.best)
            self.best_weights = {k[5:]: v for k, v in extra.items() if k.startswith("best/")}
            _set_rng(extra, self.device)
            if self.dist.enabled:  # rank 0's saved stream, moved to each rank's own
                torch.manual_seed(cfg.train.seed + 7919 * self.dist.rank + self.step)
            ckpt.write_metrics(self.run_dir, self.history)  # drop lines past the checkpoint
            self.saved_epoch = self.epoch

    # -- saving ------------------------------------------------------------------------------
    def save(self) -> None:
        if not self.dist.main:  # rank 0 alone writes the run directory
            return
        state = {"epoch": self.epoch, "step": self.step, "pos": self.pos, "sums": self.sums, "history": self.history}
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        extra = _rng_tensors(self.device)
        if self.cfg.train.early_stopping:
            state["early"] = self.best
            extra.update({f"best/{k}": v for k, v in self.best_weights.items()})
        ckpt.save_checkpoint(self.run_dir, self.model, self.optimizer, state, extra, self.history, self.cfg)
        self.saved_epoch = self.epoch
        for hook in self.on_save:
            hook(self)

    def continuation(self) -> str:
        return self.continue_with or f"vaelab train --resume {self.run_dir}"

    def moved_to(self, run_dir: Path) -> None:
        """The run directory now lives at `run_dir` (an --overwrite run swapped into place)."""
        self.run_dir = Path(run_dir)

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        t = self.cfg.train
        if self.dist.main and self.saved_epoch is None:  # a new run is a run from the start; a resumed
            ckpt.save_config(self.run_dir, self.cfg)  # one's settings change with its next checkpoint
        # denormal Adam moments slow a CPU down by 30 % (see denormals.py)
        no_denormals = flush_denormals() if self.device.type == "cpu" else nullcontext()
        first = self.epoch
        saved = logged = -math.inf
        with _catch_stop_signals(self), no_denormals:
            while self.epoch < t.epochs and not self.best["stopped"]:
                if not self._train_epoch():
                    self.save()
                    raise TrainingInterrupted(
                        f"stopped at epoch {self.epoch + 1}, step {self.step}; state saved in {self.run_dir}; "
                        f"continue with `{self.continuation()}`"
                    )
                self.epoch += 1
                self.history.append(self._epoch_record())
                self.pos = 0
                self.sums = self._zero_sums()
                stop = t.early_stopping > 0 and self._early_stop(self.history[-1])
                now = time.monotonic()
                edge = self.epoch == first + 1 or self.epoch == t.epochs or stop
                if edge or now - saved >= SAVE_EVERY:
                    self.save()
                    saved = now
                if edge or now - logged >= LOG_EVERY:
                    self.log(self._epoch_line(self.history[-1]))
                    logged = now
                for hook in self.on_epoch if self.dist.main else ():
                    hook(self.history[-1])
        self.dist.barrier()  # no rank leaves before rank 0 has written the last checkpoint
        return self.history

    def _early_stop(self, record: dict) -> bool:
        """Track the best watched neg_elbo (after KL warm-up); True, with the best epoch's weights
        back in the model, once it has not improved for train.early_stopping epochs."""
        t = self.cfg.train
        if self.epoch <= t.warmup_epochs:
            return False
        value = record[f"{self.eval_split}_neg_elbo"]
        if self.best["value"] is None or value < self.best["value"]:
            self.best.update(value=value, epoch=self.epoch)
            self.best_weights = {k: v.detach().clone().cpu() for k, v in self.model.state_dict().items()}
            return False
        if self.epoch - self.best["epoch"] < t.early_stopping:
            return False
        self.model.load_state_dict(self.best_weights)
        self.best["stopped"] = True
        record["stopped_early"] = True
        record["best_epoch"] = self.best["epoch"]
        self.log(
            f"early stopping: no progress on {self.eval_split} for {t.early_stopping} epochs; the run keeps "
            f"the weights of epoch {self.best['epoch']} ({self.eval_split} neg_elbo {self.best['value']:.2f})"
        )
        return True

    def _epoch_line(self, r: dict) -> str:
        t, split = self.cfg.train, self.eval_split
        train_key = "train_neg_iwae" if "train_neg_iwae" in r else "train_neg_elbo"
        return (
            f"epoch {r['epoch']:>3}  {train_key.removeprefix('train_')} {r[train_key]:.2f}  "
            f"{split} neg_elbo {r[split + '_neg_elbo']:.2f} "
            f"(rec {r[split + '_rec']:.2f}, kl {r[split + '_kl']:.2f})  "
            f"{r['train_seconds']:.1f}s  {describe(t.lr_schedule, r['epoch'] - 1)}".rstrip()
            + "".join(f"  {k} {v:.3g}" for k, v in self.model.schedule_state().items())
        )

    def _train_epoch(self) -> bool:
        """Run the rest of the current epoch; False if a stop was requested mid-way."""
        t, model, opt = self.cfg.train, self.model, self.optimizer
        n, bs = self.train_x.shape[0], t.batch_size
        perm = _epoch_permutation(n, t.seed, self.epoch, self.device)
        steps_total = math.ceil(n / bs)
        for group in opt.param_groups:
            group["lr"] = learning_rate(t.lr, t.lr_schedule, self.epoch)
        model.train()
        acc = None  # per-term sums over the epoch, kept on the device: no sync per step
        acc_n = 0
        start = time.perf_counter()
        # disable=None: a bar on a terminal, none in a log file (it would fill it with redraws)
        bar = tqdm(
            total=steps_total,
            initial=self.pos // bs,
            desc=f"epoch {self.epoch + 1}/{t.epochs}",
            disable=None if self.progress else True,
            leave=False,
            unit="step",
            file=sys.stderr,
        )
        stopped = False
        try:
            while self.pos < n:
                idx = perm[self.pos : self.pos + bs]
                if self.dist.enabled:  # this rank's share of the global batch
                    idx = idx[self.dist.local_slice(idx.shape[0])]
                x = self.train_x[idx]
                self.ctx.y = self.train_y[idx] if self.train_y is not None else None
                if self.dynamic:
                    x = torch.bernoulli(x)
                model.set_step(self.step)  # schedules inside the model (a temperature) follow the step
                self.ctx.step, self.ctx.epoch = self.step, self.epoch
                self.ctx.kl_weight = kl_weight(t, self.step, self.ctx.steps_per_epoch)
                with torch.autocast(
                    self.device.type, self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None
                ):
                    out = self.step_fn(x)
                if not self.contract_checked:
                    check_step_output(self.cfg, out, x.shape[0])
                loss, terms = out
                opt.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if not self.contract_checked:  # once per process: a mistake is named on the first step
                    check_encoder_gradient(self.cfg, model)
                    self.contract_checked = True
                if t.grad_clip is not None:
                    self.scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip, foreach=True)
                self.scaler.step(opt)
                self.scaler.update()
                with torch.no_grad():
                    sums = torch.stack([v.detach().sum() for v in terms.values()]).double()
                    acc = sums if acc is None else acc + sums
                acc_n += x.shape[0]
                self.pos = min(self.pos + bs, n)
                self.step += 1
                if self.step % SYNC_EVERY == 0 or self.pos >= n:
                    self._check_finite(acc)
                    shown = next(iter(terms))  # the objective's headline term
                    running = (self.sums["terms"].get(shown, 0.0) + acc[0].item()) / (self.sums["n"] + acc_n)
                    bar.set_postfix({shown: f"{running:.2f}"})
                    bar.update(math.ceil(self.pos / bs) - bar.n)
                if self.on_step is not None:
                    self.on_step(self)
                if self._should_stop(at_sync=self.step % SYNC_EVERY == 0 or self.pos >= n):
                    stopped = True
                    break
        finally:
            bar.close()
        if acc is not None:
            self._check_finite(acc)
            if self.dist.enabled:  # epoch sums over all ranks' examples
                acc = self.dist.all_reduce_sum(torch.cat([acc, acc.new_tensor([acc_n])]))
                acc, acc_n = acc[:-1], int(acc[-1].item())
            for key, value in zip(terms, acc.tolist()):
                self.sums["terms"][key] = self.sums["terms"].get(key, 0.0) + value
        self.sums["n"] += acc_n
        self.sums["seconds"] += time.perf_counter() - start
        return not stopped

    def _should_stop(self, at_sync: bool) -> bool:
        """Ctrl-C reaches every rank at a slightly different step; ranks agree to stop together
        at the next sync point, or they would wait on each other's gradients for ever."""
        if not self.dist.enabled:
            return self.stop_requested
        if not at_sync:
            return False
        flag = torch.tensor([float(self.stop_requested)], device=self.device)
        return bool(self.dist.all_reduce_sum(flag).item() > 0)

    def _check_finite(self, acc: torch.Tensor) -> None:
        if not torch.isfinite(acc).all():
            kept = (
                f"nothing was saved from this epoch, the last good checkpoint in {self.run_dir} (epoch "
                f"{self.saved_epoch}) is intact"
                if self.saved_epoch is not None
                else "no checkpoint was written, so nothing was kept"
            )
            raise NonFiniteLoss(
                f"the loss became NaN or infinite near step {self.step} (epoch {self.epoch + 1}); "
                f"{kept}. Try a lower --lr or --grad-clip 10"
            )

    @staticmethod
    def _zero_sums() -> dict:
        return {"terms": {}, "n": 0, "seconds": 0.0}

    def _epoch_record(self) -> dict:
        s = self.sums
        start = time.perf_counter()
        ev = evaluate_elbo(self.model, self.eval_x, self.cfg.train.eval_batch_size, kl=self.cfg.train.kl, y=self.eval_y)
        rec = {
            "epoch": self.epoch,
            "step": self.step,
            "lr": learning_rate(self.cfg.train.lr, self.cfg.train.lr_schedule, self.epoch - 1),
        }
        rec.update({f"train_{k}": v / s["n"] for k, v in s["terms"].items()})
        rec.update({f"{self.eval_split}_{k}": ev[k] for k in ("neg_elbo", "rec", "kl")})
        rec.update(self.model.schedule_state())  # e.g. the temperature of the epoch's last step
        if self.cfg.train.warmup_epochs > 0:  # the KL's weight at the epoch's last step
            rec["kl_weight"] = kl_weight(self.cfg.train, self.step - 1, self.ctx.steps_per_epoch)
        rec.update({"train_seconds": s["seconds"], "eval_seconds": time.perf_counter() - start})
        return rec


def train_run(
    config: Config,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log=None,
    tensorboard: bool = False,
    on_epoch=(),
    on_save=(),
    continue_with: str | None = None,
) -> Path:
    """Train a model described by `config` into the run directory `out`; returns `out`.

    With resume=True the saved config, weights, optimizer and RNG state continue the run
    exactly; `config.train.epochs` may extend it. With overwrite=True an existing run in `out`
    is replaced, but only once the new run has written its first checkpoint (vaelab.runs). With
    tensorboard=True each epoch's metrics also go to out/tensorboard (needs the `tensorboard`
    extra). Each of `on_epoch` is called with the epoch's metrics record, each of `on_save` with
    the Trainer after each checkpoint (its metrics.jsonl then holds exactly the saved epochs).
    `continue_with` is the command an interrupted run's message names (default `vaelab train
    --resume OUT`; `vaelab reproduce` names its own)."""
    from . import runs
    from .tblog import TensorBoardLogger, require_tensorboard

    if tensorboard:
        require_tensorboard()  # before anything is written
    config = config.validate()
    ctx = distributed.init(config.train.device)
    with runs.training_dir(
        out, resume=resume, overwrite=overwrite, main=ctx.main, log=log or (lambda msg: print(msg, file=sys.stderr))
    ) as slot:
        if slot.resume:
            saved = ckpt.load_config(slot.path)
            runs.check_resumable(saved, config, slot.path)
            config.model.input_shape = list(saved.model.input_shape)  # the data must still have it
        trainer = Trainer(config, slot.path, resume=slot.resume, progress=progress, log=log)
        trainer.on_save.append(slot.saved)
        slot.on_move.append(trainer.moved_to)
        if tensorboard:
            from .safefs import no_link

            no_link(slot.path / "tensorboard")  # its event files would be written wherever the link points
        board = TensorBoardLogger(slot.path / "tensorboard", start_epoch=trainer.epoch) if tensorboard else None
        if board is not None:
            trainer.on_epoch.append(board)
        trainer.on_epoch.extend(on_epoch)
        trainer.on_save.extend(on_save)
        trainer.continue_with = continue_with
        try:
            trainer.fit()
        except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM: stop at once, without saving
            if slot.checkpointed:
                raise TrainingInterrupted(
                    f"interrupted; {trainer.run_dir} keeps its last checkpoint (epoch {trainer.saved_epoch}); "
                    f"continue with `{trainer.continuation()}`"
                ) from None
            raise TrainingInterrupted(
                "interrupted before the first checkpoint was written, so nothing was kept; "
                "run the same command again to start over"
            ) from None
        finally:
            if board is not None:
                board.close()
    return Path(out)
