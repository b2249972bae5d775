"""The training loop shared by every neural model (:class:`llmrec.training.base.TorchRecommender`).

Per epoch: one pass over ``model.train_batches(...)`` with AdamW (lr, weight decay, betas, gradient clipping
from ``cfg.train``), then validation NDCG@10 (``train.monitor``) with the one evaluator, early stopping with
``train.patience``, and an atomic checkpoint (:mod:`llmrec.training.checkpoint`). When the loop ends the model
holds the weights of the best validation epoch, so the pipeline's single test evaluation uses them.

Weight averaging (``train.ema``): an exponential moving average of the trainable weights, updated after every
optimizer step and kept in the optimizer's per-parameter state (key ``"ema"``), so checkpoints and resume carry
it with no extra file. Validation swaps the averaged weights in and the raw ones back; the best epoch is chosen
on them, and the model ends holding the averaged weights of that epoch.

Reproducibility and resume: ``fit`` seeds torch / numpy / python with the run's seed; the order of the data
comes from a ``torch.Generator`` that is checkpointed with the global RNG states, the optimizer state and the
loop counters, so ``--resume`` continues bit for bit where the interrupted run stopped (same threads, same
device). Each epoch gets its own generator seeded from the persistent one, so every process of a
data-parallel run sees the same permutation and takes its own share of the batches: ``train.batch_size`` is
the global batch, each rank builds its part of every batch's rows and weights its loss so that the averaged
gradient is that of the whole batch (``_shard``, ``_rank_weight``) -- N processes follow the 1-process loss
curve (tests/test_training.py::test_two_processes_follow_one).

Devices: a plain single-process loop (CPU or one GPU) unless ``train.accelerate`` says otherwise; ``auto``
switches to Hugging Face accelerate when launched by ``accelerate launch`` (or ``WORLD_SIZE`` > 1), when a GPU
is present, or when ``train.mixed_precision`` is set. With accelerate the network (wrapped so that the
model's ``loss`` runs inside the DDP ``forward``) and the optimizer go through ``accelerator.prepare``;
gradients are synchronised by DDP, mixed precision is applied by the accelerator (``fp16`` with a gradient
scaler whose state is checkpointed too), only the main process writes checkpoints and prints.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from llmrec.config import RunConfig, TrainConfig
from llmrec.training import checkpoint as ckpt
from llmrec.utils.runtime import progress_enabled, seed_all


def launched_distributed() -> bool:
    """True when started by ``accelerate launch`` / torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or "ACCELERATE_MIXED_PRECISION" in os.environ


class _LossModule(nn.Module):
    """Holds ``model.net`` as its only submodule; ``forward(batch)`` returns ``model.loss(batch)``.

    Going through ``forward`` is what lets DDP (and accelerate's autocast wrapper) see the computation."""

    def __init__(self, model):
        super().__init__()
        self.net = model.net
        self._model = [model]  # a list, so that the recommender is not registered as a submodule

    def forward(self, batch):
        return self._model[0].loss(batch)


class _Plain:
    """The single-process stand-in for an ``accelerate.Accelerator`` (same method names)."""

    num_processes = 1
    process_index = 0
    is_main_process = True
    mixed_precision = "no"
    scaler = None

    def __init__(self):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def prepare(self, *objs):
        return objs

    def autocast(self):
        return contextlib.nullcontext()

    def backward(self, loss):
        loss.backward()

    def clip_grad_norm_(self, params, max_norm):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def wait_for_everyone(self):
        pass


@dataclass
class _Loop:
    """What one ``fit`` works with: the accelerator (or its plain stand-in), the trainable parameters, the
    optimizer, the persistent data-order generator, the loss module, and the validation set-up."""

    acc: object
    params: list
    opt: torch.optim.Optimizer
    order_gen: torch.Generator
    loss_mod: nn.Module | None = None
    valid: object = None
    ks: list[int] = field(default_factory=list)
    protocol: str = "full"


class Trainer:
    """``Trainer(model, split, TrainConfig(...), seed=..., run_dir=...).fit()``."""

    def __init__(
        self,
        model,
        split,
        train_cfg: TrainConfig | None = None,
        *,
        seed: int = 42,
        mask_history: bool = True,
        run_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
        callbacks: Iterable[Callable] | None = None,
        accelerator=None,
    ):
        self.model = model
        self.split = split
        self.cfg = train_cfg or TrainConfig()
        self.seed = int(seed)
        self.mask_history = mask_history
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.resume = resume
        self.progress = progress_enabled(progress)
        self.callbacks = list(callbacks or [])
        self.accelerator = accelerator
        self.ckpt_dir = self.run_dir / "checkpoints" if self.run_dir is not None and self.cfg.checkpoint else None
        self._best_in_memory: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_config(cls, model, split, cfg=None, **kw) -> "Trainer":
        overrides = {k: kw.pop(k) for k in list(kw) if k in TrainConfig.model_fields}
        seed, mask = 42, True
        if isinstance(cfg, RunConfig):
            train, seed, mask = cfg.train, cfg.seed, cfg.eval.mask_history
        elif isinstance(cfg, TrainConfig):
            train = cfg
        elif cfg is None:
            train = TrainConfig()
        else:
            raise TypeError(f"cfg must be a RunConfig, a TrainConfig or None, got {type(cfg).__name__}")
        if overrides:
            train = TrainConfig(**{**train.model_dump(), **overrides})
        return cls(model, split, train, seed=kw.pop("seed", seed), mask_history=kw.pop("mask_history", mask), **kw)

    # -- setup --------------------------------------------------------------------------------------
    def _make_accelerator(self):
        if self.accelerator is not None:
            return self.accelerator
        c = self.cfg
        use = c.accelerate == "on" or (
            c.accelerate == "auto" and (launched_distributed() or torch.cuda.is_available() or c.mixed_precision != "no")
        )
        if not use:
            return _Plain()
        try:
            from accelerate import Accelerator
        except ImportError as e:  # pragma: no cover - accelerate is in the [llm] extra
            raise RuntimeError("train.accelerate needs Hugging Face accelerate: pip install -e .[llm]") from e
        # cpu=True on a machine without a GPU: otherwise processes started by torchrun run unsynchronised
        return Accelerator(mixed_precision=None if c.mixed_precision == "no" else c.mixed_precision,
                           cpu=not torch.cuda.is_available())

    def _fingerprint(self) -> dict:
        m = self.model
        return {"model": m.name, "params": m.params.model_dump(mode="json"), "n_items": m.n_items, "n_users": m.n_users}

    def _valid_set(self):
        v = self.split.valid
        if v is None or len(v) == 0:
            return None
        n = self.cfg.max_eval_users
        if n is not None and n < len(v):
            idx = np.sort(np.random.default_rng(self.seed).choice(len(v), size=n, replace=False))
            v = v.subset(idx)
        return v

    def _monitor_k(self) -> int:
        try:
            return int(self.cfg.monitor.split("@", 1)[1])
        except (IndexError, ValueError):
            raise ValueError(f"train.monitor must look like 'NDCG@10', got {self.cfg.monitor!r}") from None

    def _shard(self, batches, acc):
        """This process's share of an epoch (the same number of steps on every rank).

        ``EpochBatches`` (every model but the session ones): ``train.batch_size`` is the *global* batch -- each
        batch's rows are cut into ``world`` near-equal parts and rank r builds only part r, so N processes take
        the same optimizer steps as one (a batch with fewer rows than processes is dropped). Other iterables:
        batches rank, rank + world, ... (the global batch is then ``world x batch_size``)."""
        world, rank = acc.num_processes, acc.process_index
        if world == 1:
            return batches
        if hasattr(batches, "chunks"):  # EpochBatches: build only this rank's rows of each global batch
            batches.chunks = [c.tensor_split(world)[rank] for c in batches.chunks if len(c) >= world]
            return batches
        if not hasattr(batches, "__len__"):
            batches = list(batches)
        steps = len(batches) // world
        return [b for i, b in enumerate(batches) if i % world == rank][:steps]

    def _rank_weight(self, batch, acc) -> float:
        """``world * w_rank / sum(w)`` with w = ``model.loss_weight(batch)`` (the number of terms the model's
        loss averages; default: rows). DDP averages gradients over ranks, so scaling each rank's mean loss by
        this makes the synchronised gradient that of the mean over the whole global batch."""
        w = self.model.loss_weight(batch) if hasattr(self.model, "loss_weight") else next(
            (len(v) for v in batch.values() if torch.is_tensor(v) and v.dim()), 1)
        t = torch.tensor([float(w)], dtype=torch.float64, device=acc.device)
        torch.distributed.all_reduce(t)  # gloo / nccl: one scalar per step
        return acc.num_processes * float(w) / max(float(t), 1e-12)

    def _log(self, acc, text: str) -> None:
        if self.progress and acc.is_main_process:
            from rich.console import Console

            Console(stderr=True, highlight=False, soft_wrap=True).print(text, markup=False)  # paths may hold brackets

    # -- the loop -----------------------------------------------------------------------------------
    def fit(self):
        """Build the network, resume if asked, train epoch by epoch until the epochs, patience or time budget run
        out, then leave the model with the best validation epoch's weights and its ``fit_info``."""
        loop = self._setup()
        st, resumed_from = self._start_state(loop)
        loop.loss_mod, loop.opt = loop.acc.prepare(_LossModule(self.model), loop.opt)
        if loop.acc.num_processes > 1 and loop.acc.process_index > 0:  # own dropout masks per rank (rank 0 keeps the 1-process stream)
            torch.manual_seed(self.seed + 104729 * loop.acc.process_index)
        self._prepare_validation(loop)
        stopped_by_budget = False
        for epoch in range(st["epoch"], self.cfg.epochs):
            if st["stopped_early"]:
                break
            if self._budget_spent(st):
                stopped_by_budget = True
                self._log_budget_stop(loop.acc, st["epoch"], st)
                break
            rec = self._train_epoch(loop, epoch)
            st["epoch"] = epoch + 1
            improved = self._validate(loop, epoch, rec, st)
            st["history"].append(rec)
            self._save_checkpoint(loop, epoch, rec, st, improved)
            self._log(loop.acc, self._epoch_line(rec, st, self.cfg))
            for cb in self.callbacks:
                cb(self.model, epoch + 1, rec)
            if st["stopped_early"]:
                self._log(loop.acc, f"early stop: no {self.cfg.monitor} improvement in {self.cfg.patience} "
                                    f"evaluations; best epoch {st['best_epoch']}")
                break
            if self._budget_spent(st) and epoch + 1 < self.cfg.epochs:
                stopped_by_budget = True
                self._log_budget_stop(loop.acc, epoch + 1, st)
                break
        self._restore_best(loop, st)
        self.model.fit_info = self._fit_info(loop, st, resumed_from, stopped_by_budget)
        return self.model

    # -- the steps of fit, in the order they run ----------------------------------------------------
    def _setup(self) -> "_Loop":
        """Seed, build the network on the accelerator's device, and make the optimizer and the data-order generator."""
        m, split, c = self.model, self.split, self.cfg
        m.n_items, m.n_users = split.n_items, split.n_users
        seed_all(self.seed)
        m.net = m.build(split)
        acc = self._make_accelerator()
        m.net.to(acc.device)
        params = m.trainable_parameters()
        # the fused kernel is several times faster than foreach on CPU and GPU (large embedding tables)
        fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        opt = torch.optim.AdamW(params, lr=c.lr, betas=tuple(c.betas), weight_decay=c.weight_decay, fused=fused or None)
        return _Loop(acc=acc, params=params, opt=opt, order_gen=torch.Generator().manual_seed(self.seed))

    def _start_state(self, loop: "_Loop") -> tuple[dict, int | None]:
        """The loop counters: fresh, or those of the last checkpoint with ``resume`` (which also restores the
        weights, the optimizer, the RNGs and the gradient scaler). Returns (state, epoch resumed from or None)."""
        st = {"epoch": 0, "best": None, "best_epoch": 0, "best_metrics": {}, "bad_evals": 0,
              "stopped_early": False, "history": [], "fingerprint": self._fingerprint()}
        if not self.resume:
            return st, None
        if self.ckpt_dir is None:
            raise ValueError("resume needs a run directory with checkpoints (train.checkpoint: true)")
        acc = loop.acc
        loaded = ckpt.load_checkpoint(self.ckpt_dir, "last")
        if loaded is None:
            self._log(acc, f"resume: no checkpoint in {self.ckpt_dir}, starting from scratch")
            return st, None
        ckpt.check_resume(loaded, st["fingerprint"])  # names the keys that differ
        self.model.load_state_tensors(loaded["model"])
        loop.opt.load_state_dict(loaded["optimizer"])
        ckpt.set_rng_state(loaded["rng_tensors"], loaded["state"]["rng"], loop.order_gen)
        for k in ("epoch", "best", "best_epoch", "best_metrics", "bad_evals", "stopped_early", "history"):
            st[k] = loaded["state"][k]
        if loaded["state"].get("scaler") and getattr(acc, "scaler", None) is not None:
            acc.scaler.load_state_dict(loaded["state"]["scaler"])
        self._log(acc, f"resumed from {loaded['dir']} (epoch {st['epoch']}, best {self.cfg.monitor} {st['best']})")
        return st, st["epoch"]

    def _prepare_validation(self, loop: "_Loop") -> None:
        """The validation users (maybe a fixed sample), the cut-offs to compute and the protocol they use."""
        loop.valid = self._valid_set()
        loop.ks = sorted({10, self._monitor_k()})
        loop.protocol = "sampled" if loop.valid is not None and loop.valid.candidates is not None else "full"

    def _budget_spent(self, st: dict) -> bool:
        c = self.cfg
        spent = sum(h["seconds"] + (h.get("valid_seconds") or 0.0) for h in st["history"])
        return c.max_minutes is not None and spent >= 60.0 * c.max_minutes

    def _log_budget_stop(self, acc, epochs_done: int, st: dict) -> None:
        self._log(acc, f"time budget of {self.cfg.max_minutes} min spent after {epochs_done} epochs; "
                       f"best epoch {st['best_epoch']}")

    def _train_epoch(self, loop: "_Loop", epoch: int) -> dict:
        """One pass over this process's share of the epoch's batches; returns the epoch's log record."""
        m, c, acc = self.model, self.cfg, loop.acc
        # one int64 per epoch from the persistent generator -> the epoch's generator (same on every rank)
        epoch_seed = int(torch.randint(0, 2**62, (1,), generator=loop.order_gen))
        gen = torch.Generator().manual_seed(epoch_seed)
        t0 = time.perf_counter()
        m.net.train()
        batches = self._shard(m.train_batches(self.split, gen, c.batch_size), acc)
        world = acc.num_processes
        if world > 1 and acc.process_index > 0:  # draws made while building batches: not rank 0's copies
            gen.manual_seed(epoch_seed + acc.process_index)
        total, steps = torch.zeros((), device=acc.device), 0
        for batch in self._progress(batches, epoch, c.epochs, acc, lambda: total / max(steps, 1)):
            batch = {key: v.to(acc.device, non_blocking=True) if torch.is_tensor(v) else v for key, v in batch.items()}
            with acc.autocast():
                loss = loop.loss_mod(batch)
            if world > 1:
                loss = loss * self._rank_weight(batch, acc)
            acc.backward(loss)
            if c.grad_clip:
                acc.clip_grad_norm_(loop.params, c.grad_clip)
            loop.opt.step()
            loop.opt.zero_grad(set_to_none=True)
            if c.ema is not None:
                self._ema_update(loop)
            total += loss.detach().float()
            steps += 1
        if world > 1:  # the mean loss of the global batches, the same number on every rank
            torch.distributed.all_reduce(total)
            total /= world
        mean_loss = float(total / max(steps, 1))
        train_secs = time.perf_counter() - t0
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"{m.name}: training loss is {mean_loss} in epoch {epoch + 1}; lower train.lr?")
        return {"epoch": epoch + 1, "loss": mean_loss, "seconds": round(train_secs, 3), "steps": steps, "lr": c.lr}

    def _validate(self, loop: "_Loop", epoch: int, rec: dict, st: dict) -> bool:
        """Evaluate on the validation users when due, record the metrics in ``rec``, update the best epoch and
        the patience counter in ``st``. Returns whether this epoch is the new best."""
        c, m = self.cfg, self.model
        if loop.valid is None or not ((epoch + 1) % c.eval_every == 0 or epoch + 1 == c.epochs):
            return False
        from llmrec.evaluation.evaluator import evaluate

        with self._averaged(loop):
            r = evaluate(m, loop.valid, ks=loop.ks, mask_history=self.mask_history, protocol=loop.protocol,
                         batch_size=c.eval_batch_size, progress=False)
        if c.monitor not in r["metrics"]:
            raise ValueError(f"train.monitor {c.monitor!r} is not a metric; got {sorted(r['metrics'])}")
        value = float(r["metrics"][c.monitor])
        rec["valid"] = {key: float(v) for key, v in r["metrics"].items() if key.startswith(("HR@", "NDCG@"))}
        rec["valid_seconds"] = round(r["seconds"], 3)
        improved = st["best"] is None or value > st["best"]
        if improved:
            st.update(best=value, best_epoch=epoch + 1, best_metrics=rec["valid"], bad_evals=0)
            if self.ckpt_dir is None:
                with self._averaged(loop):
                    self._best_in_memory = {key: v.detach().clone() for key, v in m.state_tensors().items()}
        else:
            st["bad_evals"] += 1
            if c.patience is not None and st["bad_evals"] >= c.patience:
                st["stopped_early"] = True
        return improved

    def _save_checkpoint(self, loop: "_Loop", epoch: int, rec: dict, st: dict, improved: bool) -> None:
        """Atomic checkpoint and one train_log.jsonl line (main process only), when the run has a directory."""
        if self.ckpt_dir is None:
            return
        acc = loop.acc
        if acc.is_main_process:
            scaler = getattr(acc, "scaler", None)
            ckpt.save_checkpoint(
                self.ckpt_dir, epoch + 1, self.model.state_tensors(), loop.opt.state_dict(), loop.order_gen,
                {k: v for k, v in st.items() if k != "epoch"}, is_best=improved,
                scaler_state=scaler.state_dict() if scaler is not None else None, best_epoch=st["best_epoch"],
            )
            self._append_log(rec)
        acc.wait_for_everyone()

    def _fit_info(self, loop: "_Loop", st: dict, resumed_from: int | None, stopped_by_budget: bool) -> dict:
        c, acc = self.cfg, loop.acc
        return {
            "epochs_run": st["epoch"],
            "best_epoch": st["best_epoch"],
            "best_valid": st["best"],
            "best_valid_metrics": st["best_metrics"],
            "monitor": c.monitor,
            "valid_users": None if loop.valid is None else len(loop.valid),
            "stopped_early": st["stopped_early"],
            "stopped_by_budget": stopped_by_budget,
            "max_minutes": c.max_minutes,
            "ema": c.ema,
            "seconds_per_epoch": [h["seconds"] for h in st["history"]],
            "valid_seconds": [h.get("valid_seconds") for h in st["history"]],
            "resumed_from_epoch": resumed_from,
            "device": str(acc.device),
            "num_processes": acc.num_processes,
            "mixed_precision": str(getattr(acc, "mixed_precision", "no")),
            "history": st["history"],
        }

    def _restore_best(self, loop: "_Loop", st: dict) -> None:
        """Leave the model holding the best validation epoch's weights (the last ones if never validated); with
        ``train.ema`` the averaged weights of that epoch."""
        ema = self.cfg.ema is not None
        if not st["best_epoch"] or st["best_epoch"] == st["epoch"]:
            if ema:
                self._load_averaged(loop, self._emas(loop))
            return
        tensors = self._best_in_memory  # already the averaged weights with ema
        if tensors is None and self.ckpt_dir is not None:
            if ema:  # the checkpoint holds the raw weights; their average is in its optimizer state
                loaded = ckpt.load_checkpoint(self.ckpt_dir, "best")
                self.model.load_state_tensors(loaded["model"])
                state = loaded["optimizer"]["state"]
                self._load_averaged(loop, [state.get(i, {}).get("ema") for i in range(len(loop.params))])
                return
            tensors = ckpt.load_model_tensors(self.ckpt_dir, "best")
        if tensors is None:
            raise RuntimeError("the best epoch's weights are neither in memory nor in a checkpoint")
        self.model.load_state_tensors(tensors)

    # -- weight averaging (train.ema) ---------------------------------------------------------------
    def _ema_update(self, loop: "_Loop") -> None:
        """ema <- d * ema + (1 - d) * w after each step, d = min(train.ema, (1 + n) / (10 + n)) at AdamW's step n
        (the warm-up keeps the first epochs from averaging in the random initialisation)."""
        with torch.no_grad():
            for p in loop.params:
                s = loop.opt.state[p]
                if "step" not in s:  # never updated (no gradient yet): nothing to average
                    continue
                if "ema" not in s:
                    s["ema"] = p.detach().clone()
                    continue
                n = float(s["step"])
                s["ema"].lerp_(p.detach(), 1.0 - min(self.cfg.ema, (1.0 + n) / (10.0 + n)))

    @contextlib.contextmanager
    def _averaged(self, loop: "_Loop"):
        """The averaged weights in the network inside the block, the raw ones restored after it (no-op without ema)."""
        if self.cfg.ema is None:
            yield
            return
        emas = self._emas(loop)
        raw = [None if e is None else p.detach().clone() for p, e in zip(loop.params, emas)]
        self._load_averaged(loop, emas)
        try:
            yield
        finally:
            self._load_averaged(loop, raw)

    @staticmethod
    def _emas(loop: "_Loop") -> list:
        """Each trainable parameter's average (None where it has none yet), in ``loop.params`` order."""
        return [loop.opt.state.get(p, {}).get("ema") for p in loop.params]

    @staticmethod
    def _load_averaged(loop: "_Loop", emas: list) -> None:
        """Copy ``emas`` into the parameters, skipping the None entries."""
        with torch.no_grad():
            for p, e in zip(loop.params, emas):
                if e is not None:
                    p.copy_(e.to(p.device))

    def _append_log(self, rec: dict) -> None:
        import json

        with open(self.run_dir / "train_log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")

    @staticmethod
    def _epoch_line(rec: dict, st: dict, c: TrainConfig) -> str:
        s = f"epoch {rec['epoch']:>3}/{c.epochs}  loss {rec['loss']:.4f}  {rec['seconds']:.1f}s"
        if "valid" in rec:
            v = rec["valid"].get(c.monitor)
            s += f"  valid {c.monitor} {v:.4f}  HR@10 {rec['valid'].get('HR@10', float('nan')):.4f}"
            s += f"  (best {st['best']:.4f} @ {st['best_epoch']})"
        return s

    def _progress(self, batches, epoch: int, epochs: int, acc, mean_loss: Callable):
        if not (self.progress and acc.is_main_process):
            yield from batches
            return
        from llmrec.utils.progress import make_progress

        total = len(batches) if hasattr(batches, "__len__") else None
        with make_progress() as p:
            task = p.add_task(f"epoch {epoch + 1}/{epochs}", total=total, info="")
            for i, b in enumerate(batches):
                yield b
                if i % 10 == 0:
                    p.update(task, info=f"loss {float(mean_loss()):.4f}")
                p.advance(task)
