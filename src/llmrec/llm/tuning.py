"""Instruction tuning of a causal backbone on (prompt, response) pairs: what PALR and LLM-TRSR fine-tune with.

``instruction_tune(backbone, examples, settings, run_dir=..., resume=...)`` trains ``backbone.model`` in place
(LoRA adapters through peft, or every weight with ``method: full``) with AdamW, a warmup + cosine / linear /
constant learning-rate schedule, gradient accumulation and gradient clipping, and leaves it in eval mode.

Each example is read exactly as scoring and generation read prompts: ``as_model_input(tok, prompt, system,
chat)`` (chat template when the tokenizer has one), then the response and the EOS token. Prompt and response are
tokenised separately and their ids concatenated (:func:`llmrec.llm.scoring.encode_prefix` /
``encode_suffix``), so the label boundary is exact. ``loss_on: response`` puts the loss on the response tokens
(and the EOS) only -- labels are -100 on the prompt; ``loss_on: all`` on the whole sequence (LLM-TRSR's Eq. 1).
The loss of an optimizer step is the mean over all its label tokens (across accumulated micro-batches), so
``batch_size: 8`` equals ``batch_size: 4, grad_accum: 2`` up to float rounding. ``max_length`` cuts the prompt
from the left (keeping a leading BOS), never the response; the number of cut examples is reported.
Length bucketing: each epoch, a seeded permutation is cut into groups of 32 batches, each group sorted by
length and cut into batches, and the order of all batches shuffled. ``max_steps`` (optimizer steps), when set,
replaces ``epochs`` (the data is cycled as needed).

Checkpoints (``run_dir`` given) go to ``run_dir/tuning/step-NNNNNNN/``: ``trainable.safetensors`` (only the
trainable weights: the LoRA adapter tensors, or the full parameters), ``optimizer.safetensors``,
``rng.safetensors`` and ``state.json`` (step counters, per-step losses, RNG / optimizer structure, a
fingerprint of backbone + settings + data), written atomically every ``checkpoint_every`` optimizer steps and at
the end; ``tuning/latest.json`` is the commit point. The learning rate is a pure function of the step, and the
batch order a pure function of (seed, epoch), so ``resume=True`` continues exactly: a resumed run ends with the
same weights as an uninterrupted one (same threads, same device). ``max_minutes`` (summed over resumed runs)
stops at a step boundary with a checkpoint and ``stopped_by_budget: true``.

``trainable_state`` / ``load_trainable_state`` move the tuned weights in and out (safetensors-ready tensors);
``state_hash`` makes a cache key of them, and ``effective_fingerprint(backbone)`` = the base fingerprint plus
that hash once the backbone was tuned or loaded with tuned weights, so caches never mix base and tuned outputs.

Under ``accelerate launch`` (WORLD_SIZE > 1) training runs data-parallel through accelerate (DDP): each process
takes its share of every step's micro-batches; only the main process writes checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file

from llmrec.llm.lora import (
    LoraSettings,
    apply_lora,
    is_peft,
    load_lora_state_dict,
    lora_state_dict,
)
from llmrec.llm.prompts import as_model_input
from llmrec.llm.scoring import encode_prefix, encode_suffix, logits_kw_supported
from llmrec.training import checkpoint as ckpt
from llmrec.utils.io import atomic_write_dir, atomic_write_json
from llmrec.utils.padding import pad_rows
from llmrec.utils.runtime import progress_enabled

POINTER = "latest.json"
_GROUP_BATCHES = 32  # length bucketing: batches per sorted group


class TuningSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["lora", "full"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    lr: float = Field(2e-4, gt=0, le=1)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, ge=0)  # 0 / None: no clipping
    loss_on: Literal["response", "all"] = "response"
    max_length: int = Field(1024, ge=8)
    length_bucketing: bool = True
    max_minutes: float | None = Field(None, gt=0)
    checkpoint_every: int = Field(50, ge=1)
    seed: int = 0
    chat: bool | None = None
    system: str | None = None


@dataclass(frozen=True)
class SFTExample:
    prompt: str  # the user text (formatted by as_model_input)
    response: str


# ----------------------------------------------------------------------------------------------------
# trainable weights


def trainable_state(backbone) -> dict[str, torch.Tensor]:
    """The tuned weights: the LoRA adapter tensors of a peft model, else every (deduplicated) parameter."""
    return _trainable_of(backbone.model)


def load_trainable_state(backbone, tensors: dict[str, torch.Tensor]) -> None:
    """Load tensors from :func:`trainable_state` into ``backbone.model`` (it must have the same structure)."""
    model = backbone.model
    if is_peft(model):
        expected = set(lora_state_dict(model))
        got = set(tensors)
        if expected != got:
            raise ValueError(f"adapter tensors do not match the model: {len(got - expected)} unexpected "
                             f"(e.g. {sorted(got - expected)[:2]}), {len(expected - got)} missing "
                             f"(e.g. {sorted(expected - got)[:2]}); were they saved with other LoRA settings?")
        load_lora_state_dict(model, tensors)
    else:
        params = dict(model.named_parameters())
        if set(params) != set(tensors):
            if any("lora_" in k for k in tensors):
                raise ValueError("these are LoRA adapter tensors; wrap the backbone with apply_lora first")
            raise ValueError(f"trainable tensors do not match the model: unexpected {sorted(set(tensors) - set(params))[:3]}, "
                             f"missing {sorted(set(params) - set(tensors))[:3]}")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(tensors[k].to(p.device, p.dtype))
    backbone.info["trainable_hash"] = state_hash(tensors)


def state_hash(tensors: dict[str, torch.Tensor]) -> str:
    """A short hash of names, dtypes, shapes and bytes of ``tensors`` (a cache key for tuned weights)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}\x00{t.dtype}\x00{tuple(t.shape)}\x00".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def effective_fingerprint(backbone) -> str:
    """``backbone.fingerprint``, plus the hash of the tuned weights once they were trained or loaded."""
    th = backbone.info.get("trainable_hash")
    return f"{backbone.fingerprint}+{th}" if th else backbone.fingerprint


# ----------------------------------------------------------------------------------------------------
# data


def _as_example(ex) -> SFTExample:
    if isinstance(ex, SFTExample):
        return ex
    ex = SFTExample(*ex) if isinstance(ex, (tuple, list)) else SFTExample(**ex)
    if not isinstance(ex.prompt, str) or not isinstance(ex.response, str):
        raise TypeError(f"an SFT example needs a str prompt and response, got {type(ex.prompt).__name__}, "
                        f"{type(ex.response).__name__}")
    return ex


@dataclass
class _Encoded:
    ids: list[list[int]]
    n_prompt: list[int]  # prompt tokens at the start of ids (after truncation)
    n_truncated: int


def encode_examples(tokenizer, examples: Sequence[SFTExample], settings: TuningSettings) -> _Encoded:
    """Token ids of ``as_model_input(prompt) + response + EOS`` per example, the prompt cut from the left."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("instruction tuning needs a tokenizer with an EOS token")
    bos = tokenizer.bos_token_id
    ids, n_prompt, n_trunc = [], [], 0
    for i, ex in enumerate(examples):
        ex = _as_example(ex)
        p = encode_prefix(tokenizer, as_model_input(tokenizer, ex.prompt, system=settings.system, chat=settings.chat))
        r = encode_suffix(tokenizer, ex.response) + [eos]
        if len(p) + len(r) > settings.max_length:
            keep_bos = 1 if (p and bos is not None and p[0] == bos) else 0
            room = settings.max_length - len(r) - keep_bos
            if room < 1:
                raise ValueError(f"example {i}: the response alone has {len(r)} tokens (with EOS), more than "
                                 f"max_length {settings.max_length} allows; raise tuning max_length")
            p = p[:keep_bos] + p[len(p) - room:]
            n_trunc += 1
        ids.append(p + r)
        n_prompt.append(len(p))
    return _Encoded(ids, n_prompt, n_trunc)


def epoch_batches(lengths: Sequence[int], batch_size: int, bucketing: bool, seed: int, epoch: int) -> list[np.ndarray]:
    """The micro-batches (example indices) of one epoch, a pure function of (seed, epoch)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])
    n = len(lengths)
    perm = rng.permutation(n)
    if not bucketing:
        return [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    lens = np.asarray(lengths)
    group = batch_size * _GROUP_BATCHES
    batches = []
    for g0 in range(0, n, group):
        g = perm[g0:g0 + group]
        g = g[np.argsort(-lens[g], kind="stable")]
        batches += [g[i:i + batch_size] for i in range(0, len(g), batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))]


def collate(enc: _Encoded, idx, pad_id: int, loss_on: str) -> dict[str, torch.Tensor]:
    """Right-padded input_ids / attention_mask / labels (-100 on padding, and on the prompt for ``response``)."""
    ids, lens = pad_rows([enc.ids[i] for i in idx], pad=pad_id)
    cols = np.arange(ids.shape[1])
    start = np.array([enc.n_prompt[i] if loss_on == "response" else 0 for i in idx], dtype=np.int64)
    labels = np.where((cols >= start[:, None]) & (cols < lens[:, None]), ids, -100)
    mask = (cols < lens[:, None]).astype(np.int64)
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask), "labels": torch.from_numpy(labels)}


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------------
# checkpoints


def _fingerprint(backbone, examples_hash: str, settings: TuningSettings) -> dict:
    s = settings.model_dump(mode="json", exclude={"max_minutes", "checkpoint_every"})
    return {"backbone": backbone.fingerprint, "settings": s, "examples": examples_hash}


def _examples_hash(examples: Sequence[SFTExample]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        p, r = ex.prompt, ex.response
        h.update(p.encode("utf-8", "replace") + b"\x00" + r.encode("utf-8", "replace") + b"\x01")
    return f"{len(examples)}:{h.hexdigest()[:16]}"


def save_tuning_checkpoint(root: Path, step: int, trainable: dict, opt_state: dict, state: dict) -> Path:
    name = f"step-{step:07d}"

    def write(tmp: Path) -> None:
        save_file({k: v.detach().cpu().contiguous() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
        opt_tensors, opt_meta = ckpt.flatten_optimizer(opt_state)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng_tensors, rng_meta = ckpt.rng_state(None)
        save_file({k: v.cpu().contiguous() for k, v in rng_tensors.items()}, str(tmp / "rng.safetensors"))
        payload = {**state, "step": step, "optimizer": opt_meta, "rng": rng_meta}
        (tmp / "state.json").write_text(json.dumps(ckpt._to_json(payload)))

    root.mkdir(parents=True, exist_ok=True)
    final = atomic_write_dir(root / name, write)
    atomic_write_json(root / POINTER, {"last": name})
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("step-") and d.name != name:
            shutil.rmtree(d, ignore_errors=True)
    return final


def load_tuning_checkpoint(root: Path) -> dict | None:
    """``{"dir", "trainable", "optimizer", "rng_tensors", "state"}`` of the last checkpoint, or None."""
    p = Path(root) / POINTER
    if not p.exists():
        return None
    d = Path(root) / json.loads(p.read_text())["last"]
    state = ckpt._from_json(json.loads((d / "state.json").read_text()))
    return {
        "dir": d,
        "trainable": load_file(str(d / "trainable.safetensors")),
        "optimizer": ckpt.unflatten_optimizer(load_file(str(d / "optimizer.safetensors")), state["optimizer"]),
        "rng_tensors": load_file(str(d / "rng.safetensors")),
        "state": state,
    }


# ----------------------------------------------------------------------------------------------------
# the loop


def _accelerator():
    from llmrec.training.trainer import _Plain, launched_distributed

    if launched_distributed():
        from accelerate import Accelerator

        return Accelerator(cpu=not torch.cuda.is_available())  # cpu=True: gloo DDP across CPU processes
    return _Plain()


def _prepare_model(backbone, settings: TuningSettings) -> list[torch.nn.Parameter]:
    if backbone.kind != "causal" or not backbone.head:
        raise ValueError(f"instruction tuning needs a causal LM loaded with head=True (got a {backbone.kind} backbone, "
                         f"head={backbone.head})")
    if settings.method == "lora":
        if not is_peft(backbone.model):
            torch.manual_seed(settings.seed)  # the adapters' initialisation
            backbone.model = apply_lora(backbone.model, settings.lora)
    else:
        if is_peft(backbone.model):
            raise ValueError("tuning method 'full' on a LoRA-wrapped backbone; load it without lora or use method 'lora'")
        for p in backbone.model.parameters():
            p.requires_grad_(True)
    params = [p for p in backbone.model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the backbone has no trainable parameters")
    return params


def _progress_on(progress: bool, acc) -> bool:
    return progress_enabled(progress) and acc.is_main_process


def instruction_tune(backbone, examples: Sequence[SFTExample], settings: TuningSettings | dict | None = None, *,
                     run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
                     callback: Callable[[int, float], bool | None] | None = None) -> dict:
    """Fine-tune ``backbone.model`` on ``examples`` in place; returns the fit info (also in run_dir/tuning/info.json).

    ``callback(step, loss)`` runs after every optimizer step (1-based); returning True stops the run there
    (with a checkpoint). ``resume=True`` continues from run_dir/tuning (a finished run just loads its weights)."""
    s = settings if isinstance(settings, TuningSettings) else TuningSettings(**(settings or {}))
    examples = [_as_example(ex) for ex in examples]
    if not examples:
        raise ValueError("instruction_tune: no training examples")
    tok = backbone.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    enc = encode_examples(tok, examples, s)
    lengths = [len(x) for x in enc.ids]
    params = _prepare_model(backbone, s)
    model = backbone.model
    acc = _accelerator()
    world, rank = acc.num_processes, acc.process_index
    device = backbone.device if world == 1 else acc.device

    n_batches = math.ceil(len(enc.ids) / s.batch_size)
    per_step = s.grad_accum * world
    if world > 1 and n_batches < per_step:
        raise ValueError(f"{len(enc.ids)} examples make {n_batches} micro-batches, fewer than one step needs on "
                         f"{world} processes (batch_size x grad_accum x processes); use fewer processes or a smaller batch")
    steps_per_epoch = math.ceil(n_batches / per_step) if world == 1 else n_batches // per_step
    total = s.max_steps if s.max_steps is not None else s.epochs * steps_per_epoch
    warmup = math.ceil(s.warmup_ratio * total)

    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": s.weight_decay}] + ([{"params": no_decay, "weight_decay": 0.0}] if no_decay else [])
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    opt = torch.optim.AdamW(groups, lr=s.lr, fused=fused or None)

    root = Path(run_dir) / "tuning" if run_dir is not None else None
    fp = _fingerprint(backbone, _examples_hash(examples), s)
    st = {"step": 0, "seconds": 0.0, "losses": [], "examples_seen": 0, "fingerprint": fp}
    resumed_from = None
    if resume:
        if root is None:
            raise ValueError("instruction_tune(resume=True) needs a run_dir")
        loaded = load_tuning_checkpoint(root)
        if loaded is not None:
            if loaded["state"].get("fingerprint") != fp:
                raise ValueError(f"cannot resume tuning from {loaded['dir']}: it was started with other backbone, "
                                 f"settings or examples ({loaded['state'].get('fingerprint')} vs {fp})")
            load_trainable_state(backbone, loaded["trainable"])
            opt.load_state_dict(loaded["optimizer"])
            ckpt.set_rng_state(loaded["rng_tensors"], loaded["state"]["rng"])
            for k in ("step", "seconds", "losses", "examples_seen"):
                st[k] = loaded["state"][k]
            resumed_from = st["step"]
    if resumed_from is None:
        torch.manual_seed(s.seed)
        np.random.seed(s.seed)

    ddp_model, opt = acc.prepare(model, opt) if world > 1 else (model, opt)
    use_keep = logits_kw_supported(model)
    cached_epoch: tuple[int, list] | None = None

    def step_batches(step: int) -> list[np.ndarray]:
        nonlocal cached_epoch
        epoch, j = divmod(step, steps_per_epoch)
        if cached_epoch is None or cached_epoch[0] != epoch:
            cached_epoch = (epoch, epoch_batches(lengths, s.batch_size, s.length_bucketing, s.seed, epoch))
        mine = cached_epoch[1][j * per_step:(j + 1) * per_step]
        return mine[rank::world]

    def save() -> None:
        if root is not None and acc.is_main_process:
            unwrapped = acc.unwrap_model(ddp_model) if world > 1 else model
            save_tuning_checkpoint(root, st["step"], _trainable_of(unwrapped), opt.state_dict(),
                                   {k: v for k, v in st.items() if k != "step"})
        if world > 1:
            acc.wait_for_everyone()

    start_step, stopped_by_budget, stopped_by_callback = st["step"], False, False
    t0, seen0, saved_at = time.perf_counter(), st["examples_seen"], st["step"]
    budget = None if s.max_minutes is None else 60.0 * s.max_minutes
    prev_seconds = st["seconds"]
    model.train()
    bar = _Bar(_progress_on(progress, acc), total, st["step"])
    try:
        while st["step"] < total:
            spent = prev_seconds + (time.perf_counter() - t0)
            if budget is not None and _agree(world, spent >= budget and (st["step"] > start_step or prev_seconds >= budget),
                                             device):
                stopped_by_budget = True
                break
            step = st["step"]
            factor = lr_factor(step, total, warmup, s.schedule)
            for g in opt.param_groups:
                g["lr"] = s.lr * factor
            mbs = [collate(enc, idx, pad_id, s.loss_on) for idx in step_batches(step)]
            n_tok = sum(int((b["labels"][:, 1:] != -100).sum()) for b in mbs)
            step_loss, n_ex = 0.0, sum(len(b["input_ids"]) for b in mbs)
            for k, b in enumerate(mbs):
                sync = contextlib.nullcontext() if (world == 1 or k == len(mbs) - 1) else acc.no_sync(ddp_model)
                with sync:
                    loss = _batch_loss(ddp_model, b, device, use_keep) / max(n_tok, 1)
                    acc.backward(loss)
                step_loss += float(loss.detach())
            if s.grad_clip:
                acc.clip_grad_norm_(params, s.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if world > 1:  # the mean loss over processes (each normalised by its own tokens), all their examples
                t = torch.tensor([step_loss, n_ex], device=device, dtype=torch.float64)
                torch.distributed.all_reduce(t)
                step_loss, n_ex = float(t[0]) / world, int(t[1])
            st["examples_seen"] += n_ex
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"instruction tuning: loss is {step_loss} at step {step + 1}; lower tuning lr?")
            st["step"] = step + 1
            st["losses"].append(step_loss)
            st["seconds"] = prev_seconds + (time.perf_counter() - t0)
            elapsed = time.perf_counter() - t0
            bar.update(step_loss, (st["examples_seen"] - seen0) / max(elapsed, 1e-9))
            if st["step"] % s.checkpoint_every == 0 and st["step"] < total:
                save()
                saved_at = st["step"]
            if callback is not None and callback(st["step"], step_loss):
                stopped_by_callback = True
                break
    finally:
        bar.close()
        model.eval()
    st["seconds"] = prev_seconds + (time.perf_counter() - t0)
    if saved_at != st["step"] or (root is not None and not (root / POINTER).exists()):
        save()
    seconds_here = time.perf_counter() - t0
    losses = st["losses"]
    backbone.info["trainable_hash"] = state_hash(_trainable_of(model))
    tr = sum(p.numel() for p in params)
    info = {
        "method": s.method,
        "steps": st["step"],
        "total_steps": total,
        "steps_per_epoch": steps_per_epoch,
        "epochs_run": round(st["step"] / steps_per_epoch, 4),
        "examples": len(enc.ids),
        "examples_seen": st["examples_seen"],
        "n_truncated": enc.n_truncated,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "mean_loss": float(np.mean(losses)) if losses else None,
        "last10_loss": float(np.mean(losses[-10:])) if losses else None,
        "losses": losses,
        "seconds": round(st["seconds"], 3),
        "seconds_this_run": round(seconds_here, 3),
        "examples_per_s": round((st["examples_seen"] - seen0) / max(seconds_here, 1e-9), 3),
        "stopped_by_budget": stopped_by_budget,
        "stopped_by_callback": stopped_by_callback,
        "max_minutes": s.max_minutes,
        "resumed_from_step": resumed_from,
        "steps_this_run": st["step"] - start_step,
        "trainable_params": tr,
        "total_params": sum(p.numel() for p in model.parameters()),
        "trainable_hash": backbone.info["trainable_hash"],
        "num_processes": world,
        "settings": s.model_dump(mode="json"),
    }
    if root is not None and acc.is_main_process:
        atomic_write_json(root / "info.json", info)
    return info


def _agree(world: int, flag: bool, device) -> bool:
    """The main process's decision, on every process (clocks differ; a split decision would hang DDP)."""
    if world == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.broadcast(t, 0)
    return bool(t.item())


def _trainable_of(model) -> dict[str, torch.Tensor]:
    if is_peft(model):
        return lora_state_dict(model)
    return {k: p.detach().cpu().contiguous().clone() for k, p in model.named_parameters()}


def _batch_loss(model, b: dict, device, use_keep: bool) -> torch.Tensor:
    """Summed token NLL of the labels of one micro-batch (next-token prediction)."""
    ids = b["input_ids"].to(device)
    mask = b["attention_mask"].to(device)
    labels = b["labels"].to(device)
    targets = labels[:, 1:]
    if use_keep:
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = targets != -100
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep).logits
        return torch.nn.functional.cross_entropy(logits.float(), targets[targets != -100], reduction="sum")
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=-100, reduction="sum")


class _Bar:
    """A rich progress bar over optimizer steps showing the running loss and examples/s (or nothing)."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.p = None
        self.recent: list[float] = []
        if enabled:
            from llmrec.utils.progress import make_progress

            self.p = make_progress()
            self.p.start()
            self.task = self.p.add_task("tune", total=total, completed=done, info="")

    def update(self, loss: float, ex_per_s: float) -> None:
        if self.p is None:
            return
        self.recent = (self.recent + [loss])[-20:]
        self.p.update(self.task, advance=1, info=f"loss {np.mean(self.recent):.4f}  {ex_per_s:.2f} ex/s")

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()
