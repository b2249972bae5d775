"""A step-based training loop in phases (e.g. GenRec's pretraining, then finetuning).

The shared :class:`llmrec.training.trainer.Trainer` works in epochs with one constant learning rate. Models
whose epochs are long (a seq2seq LM over every prefix of every sequence) and whose recipe has phases with a
warmup schedule each use this loop instead; it keeps the Trainer's guarantees:

- AdamW (``train.lr``, ``train.weight_decay``, ``train.betas``), gradient clipping (``train.grad_clip``);
- per phase a fresh optimizer and a **linear warmup** over the first ``warmup_ratio`` of its steps, then
  linear decay to 0 at the phase's last step;
- validation (``train.monitor``, e.g. NDCG@10, through the one evaluator; ``train.max_eval_users``: a fixed
  seeded subset) every ``eval_every`` steps of a phase with ``validate=True`` and at its end; early stopping
  after ``train.patience`` evaluations without improvement; the model ends holding the best evaluated weights;
- atomic checkpoints (:mod:`llmrec.training.checkpoint`: model, optimizer, RNG, counters) every
  ``checkpoint_every`` steps and after every evaluation; ``resume=True`` continues from the last one (the
  batch of step ``s`` is a pure function of the phase and ``s``, so the data order resumes exactly);
- time budgets: ``train.max_minutes`` for all phases together and ``Phase.max_minutes`` per phase (training
  and validation wall time, accumulated across resumes); a phase stopped by its budget ends early and the next
  phase starts.

The model provides ``trainable_parameters()``, ``loss(batch)``, ``state_tensors()``, ``load_state_tensors()``,
``net`` (an nn.Module) and is evaluated through :func:`llmrec.evaluation.evaluator.evaluate`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llmrec.config import ConfigError, TrainConfig
from llmrec.training import checkpoint as ckpt
from llmrec.utils.runtime import progress_enabled


@dataclass
class Phase:
    name: str
    steps: int
    make_batch: Callable[[int], dict]  # step -> batch (deterministic in the step)
    validate: bool = False
    max_minutes: float | None = None
    eval_every: int | None = None  # steps; None = only at the end of the phase


def warmup_linear(step: int, total: int, warmup_ratio: float) -> float:
    """Multiplier of the base lr at 0-based ``step``: linear warmup, then linear decay to 0 at ``total``."""
    warm = max(1, math.ceil(warmup_ratio * total)) if warmup_ratio > 0 else 0
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))


def _log(progress: bool, msg: str) -> None:
    if progress_enabled(progress):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_phases(model, split, phases: list[Phase], cfg: TrainConfig, *, seed: int, mask_history: bool,
               run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
               warmup_ratio: float = 0.05, checkpoint_every: int = 500, fingerprint: dict | None = None,
               log_every: int = 50, callbacks=None) -> dict:
    """Train ``model`` through ``phases``; returns the fit info (per-phase steps, seconds, losses, validation).

    ``callbacks``: functions ``f(model, n, record)`` called after the n-th validation (as the Trainer calls them
    after every epoch; ``record`` has ``epoch`` = n, ``loss`` and ``valid``)."""
    from llmrec.evaluation.evaluator import evaluate

    if cfg.ema is not None:
        raise ConfigError("train.ema: the step-based phase loop does not average weights; remove train.ema", key="train.ema")
    ckpt_dir = Path(run_dir) / "checkpoints" if run_dir is not None and cfg.checkpoint else None
    device = next(iter(model.net.parameters())).device
    params = model.trainable_parameters()
    st = {"phase": 0, "step": 0, "best": None, "best_phase": None, "best_step": None, "best_metrics": {},
          "bad_evals": 0, "stopped_early": False, "history": [], "phase_info": {}, "fingerprint": fingerprint,
          "opt_phase": None, "global_step": 0}
    loaded = None
    if resume:
        if ckpt_dir is None:
            raise ConfigError("--resume needs a run directory with checkpoints (train.checkpoint: true)")
        loaded = ckpt.load_checkpoint(ckpt_dir, "last")
        if loaded is None:
            _log(progress, f"resume: no checkpoint in {ckpt_dir}, starting from scratch")
        else:
            if loaded["state"].get("fingerprint") != fingerprint:  # a CheckpointError naming the keys that differ
                ckpt.check_resume(loaded, fingerprint or {})
            model.load_state_tensors(loaded["model"])
            ckpt.set_rng_state(loaded["rng_tensors"], loaded["state"]["rng"], None)
            for k in st:
                if k in loaded["state"] and k != "fingerprint":
                    st[k] = loaded["state"][k]
            _log(progress, f"resumed from {loaded['dir']} (phase {st['phase']}, step {st['step']})")

    valid = split.valid if split.valid is not None and len(split.valid) else None
    if valid is not None and cfg.max_eval_users is not None and cfg.max_eval_users < len(valid):
        idx = np.sort(np.random.default_rng(seed).choice(len(valid), size=cfg.max_eval_users, replace=False))
        valid = valid.subset(idx)
    k = int(cfg.monitor.split("@", 1)[1]) if "@" in cfg.monitor else 10
    ks = sorted({10, k})

    def spent_total() -> float:
        return sum(p.get("seconds", 0.0) + p.get("valid_seconds", 0.0) for p in st["phase_info"].values())

    def save(phase_i: int, opt, is_best: bool) -> None:
        if ckpt_dir is None:
            return
        state = {k2: v for k2, v in st.items()}
        state["opt_phase"] = phase_i
        ckpt.save_checkpoint(ckpt_dir, st["global_step"], model.state_tensors(), opt.state_dict(), None, state,
                             is_best=is_best)

    best_in_memory = None
    stopped_by_budget = False
    while st["phase"] < len(phases):
        pi = st["phase"]
        ph = phases[pi]
        info = st["phase_info"].setdefault(ph.name, {"steps_planned": ph.steps, "steps": 0, "seconds": 0.0,
                                                     "valid_seconds": 0.0, "loss_sum": 0.0, "stopped_by_budget": False})
        fused = bool(params) and all(x.is_floating_point() and x.device.type in ("cpu", "cuda") for x in params)
        opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=fused or None)
        if loaded is not None and loaded["state"].get("opt_phase") == pi and st["step"] > 0:
            opt.load_state_dict(loaded["optimizer"])
        loaded = None
        _log(progress, f"phase {ph.name}: steps {st['step']}..{ph.steps}")
        model.net.train()
        t_last = time.perf_counter()
        win_loss, win_n = 0.0, 0
        stop_phase = False
        while st["step"] < ph.steps and not stop_phase:
            budget = (ph.max_minutes is not None and info["seconds"] + info["valid_seconds"] >= 60 * ph.max_minutes) or \
                     (cfg.max_minutes is not None and spent_total() >= 60 * cfg.max_minutes)
            if budget:
                info["stopped_by_budget"] = stopped_by_budget = True
                _log(progress, f"phase {ph.name}: time budget spent after {st['step']} of {ph.steps} steps")
                break
            step = st["step"]
            for g in opt.param_groups:
                g["lr"] = cfg.lr * warmup_linear(step, ph.steps, warmup_ratio)
            batch = {kk: v.to(device) if torch.is_tensor(v) else v for kk, v in ph.make_batch(step).items()}
            loss = model.loss(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{model.name}: loss is {float(loss)} at {ph.name} step {step + 1}; lower train.lr?")
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            lv = float(loss.detach())
            info["loss_sum"] += lv
            win_loss += lv
            win_n += 1
            st["step"] += 1
            st["global_step"] += 1
            info["steps"] = st["step"]
            now = time.perf_counter()
            info["seconds"] += now - t_last
            t_last = now
            if st["step"] % log_every == 0:
                _log(progress, f"{ph.name} step {st['step']}/{ph.steps} loss {win_loss / max(win_n, 1):.4f} "
                               f"lr {opt.param_groups[0]['lr']:.2e} {info['seconds']:.0f}s")
                win_loss, win_n = 0.0, 0
            last = st["step"] >= ph.steps
            evaluated = is_best = False
            if ph.validate and valid is not None and (last or (ph.eval_every and st["step"] % ph.eval_every == 0)):
                r = evaluate(model, valid, ks=ks, mask_history=mask_history, batch_size=cfg.eval_batch_size, progress=False)
                model.net.train()
                value = float(r["metrics"][cfg.monitor])
                rec = {"phase": ph.name, "step": st["step"], "loss": info["loss_sum"] / max(info["steps"], 1),
                       "valid": {kk: float(v) for kk, v in r["metrics"].items() if kk.startswith(("HR@", "NDCG@"))},
                       "valid_seconds": round(r["seconds"], 2)}
                if r.get("model_report"):
                    rec["generation"] = {kk: v for kk, v in r["model_report"].items() if kk != "predictions"}
                st["history"].append(rec)
                info["valid_seconds"] += r["seconds"]
                t_last = time.perf_counter()
                evaluated = True
                is_best = st["best"] is None or value > st["best"]
                if is_best:
                    st.update(best=value, best_phase=ph.name, best_step=st["step"], best_metrics=rec["valid"], bad_evals=0)
                    if ckpt_dir is None:
                        best_in_memory = {kk: v.detach().clone() for kk, v in model.state_tensors().items()}
                else:
                    st["bad_evals"] += 1
                    if cfg.patience is not None and st["bad_evals"] >= cfg.patience:
                        st["stopped_early"] = stop_phase = True
                for cb in callbacks or []:
                    cb(model, len(st["history"]), {**rec, "epoch": len(st["history"])})
                _log(progress, f"{ph.name} step {st['step']}: valid {cfg.monitor} {value:.4f} (best {st['best']:.4f} "
                               f"@ {st['best_phase']} {st['best_step']}) {r['seconds']:.0f}s")
            if evaluated or last or st["step"] % checkpoint_every == 0:
                if last or stop_phase:
                    st["phase"], st["step"] = pi + 1, 0
                save(pi, opt, is_best)
                if last or stop_phase:
                    break
        if st["phase"] == pi:  # left by the budget (or zero steps planned): move on
            st["phase"], st["step"] = pi + 1, 0
            save(pi, opt, False)
        if st["stopped_early"]:
            break

    if st["best_step"] is not None:
        tensors = best_in_memory
        if tensors is None and ckpt_dir is not None:
            tensors = ckpt.load_model_tensors(ckpt_dir, "best")
        if tensors is not None:
            model.load_state_tensors(tensors)
    phase_info = {}
    for name, p in st["phase_info"].items():
        phase_info[name] = {"steps": p["steps"], "steps_planned": p["steps_planned"], "seconds": round(p["seconds"], 1),
                            "valid_seconds": round(p["valid_seconds"], 1),
                            "mean_loss": p["loss_sum"] / max(p["steps"], 1), "stopped_by_budget": p["stopped_by_budget"]}
    return {
        "phases": phase_info,
        "train_seconds": round(sum(p["seconds"] for p in st["phase_info"].values()), 1),
        "valid_seconds": round(sum(p["valid_seconds"] for p in st["phase_info"].values()), 1),
        "best_valid": st["best"],
        "best_phase": st["best_phase"],
        "best_step": st["best_step"],
        "best_valid_metrics": st["best_metrics"],
        "monitor": cfg.monitor,
        "valid_users": None if valid is None else len(valid),
        "stopped_early": st["stopped_early"],
        "stopped_by_budget": stopped_by_budget,
        "max_minutes": cfg.max_minutes,
        "warmup_ratio": warmup_ratio,
        "history": st["history"],
        "device": str(device),
    }
