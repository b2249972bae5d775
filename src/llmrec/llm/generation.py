"""Batched text generation with a disk cache, resume and data parallelism: the stage PALR, LLM-TRSR and others use.

``generate(backbone, prompts, settings)`` turns *user texts* (rendered :mod:`llmrec.llm.prompts` templates) into
answers of any causal or seq2seq backbone that ``load_backbone(..., head=True)`` loads:

- **Model input**: every prompt goes through :func:`llmrec.llm.prompts.as_model_input` (chat template and
  ``settings.system`` when the tokenizer has one, ``settings.chat=None`` = auto). Chat-formatted text is tokenised
  without adding special tokens (the template already wrote them), plain text with them (e.g. Llama's ``<s>``),
  exactly as :meth:`Backbone.generate_text` does, so greedy outputs equal ``model.generate`` on one prompt.
- **Batches**: prompts are sorted by token length (longest first) and cut into batches of ``batch_size``;
  causal models are left-padded, seq2seq encoders right-padded; outputs come back in input order. Identical
  (prompt, key) pairs are generated once.
- **Decoding**: greedy by default; ``num_beams`` > 1 = beam search (the best beam is returned); ``do_sample`` =
  seeded sampling. Sampling draws a per-prompt Gumbel noise stream from ``seed`` + a hash of the prompt (and its
  key) and takes the arg-max of the (temperature / top-k / top-p warped) logits plus that noise, which is an exact
  sample from the warped distribution; so a prompt's sample never depends on the batch it lands in, the batch
  size or the number of processes. Sampling with beams is rejected.
- **Truncation**: ``max_prompt_tokens`` keeps the **last** tokens of the formatted prompt (plus its leading BOS
  token when it has one): the answer cue at the end (``Answer:``, the chat template's assistant header) and the
  most recent history survive; the task instruction at the start may not. Callers should fit their histories
  themselves (:mod:`llmrec.llm.text`); this is a safety net, and ``n_truncated`` counts the prompts it cut.
- **Constraints**: ``constraints[i]`` (an object with ``allowed(generated_ids) -> list[int]``, e.g. a
  :class:`~llmrec.llm.decoding.ListConstraint`) restricts prompt ``i``'s tokens through
  :func:`~llmrec.llm.decoding.prefix_allowed_tokens_fn` (EOS/pad once the constraint is complete).
- **Outputs**: ``texts[i]`` (decoded without special tokens, stripped) and ``token_ids[i]`` (the generated ids,
  cut at the first EOS/pad: no padding, no EOS).
- **Cache**: with ``cache_dir``, outputs are stored under ``cache_dir/generation/<run-hash>/`` where the run
  hash covers the model (``backbone.fingerprint`` + ``model_key`` when given; else + the
  ``backbone.info["trainable_hash"]`` that :mod:`llmrec.llm.tuning` sets after training/loading tuned weights;
  else + a hash of the adapter weights of a peft model), its dtype, the tokenizer, ``template_key`` and every setting that changes
  outputs (not ``batch_size``/``chunk_size``); each entry is keyed by the formatted prompt + ``keys[i]`` (+
  whether it is constrained). Every ``chunk_size`` finished prompts are written as one JSONL file (temp name
  then ``os.replace``), so a rerun reads everything back without touching the model and a killed run restarts
  where it stopped (only unfinished chunks are regenerated). Each record carries a checksum; unreadable or corrupt
  records are skipped with a warning and generated again.
  Weights changed in place by other code (not :mod:`llmrec.llm.tuning`) need ``model_key`` (e.g.
  ``llmrec.llm.tuning.state_hash`` of them), or stale outputs of the base model would be read back.
- **Data parallel**: under ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE`` > 1) each process generates an
  interleaved shard of the uncached prompts and writes its own chunk files; after a barrier every process reads
  the merged cache (without ``cache_dir`` the outputs are exchanged with ``gather_object``) and returns all
  outputs in input order. A model on the wrong GPU (loaded before the process group set the device) is moved to
  the process's device. Without a launcher it is a plain single process.

A progress bar shows prompts/s and generated tokens/s; one summary line is logged (``llmrec.llm.generation``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmrec.llm.prompts import as_model_input, uses_chat
from llmrec.utils.runtime import progress_enabled

log = logging.getLogger(__name__)

CACHE_VERSION = 1
# settings that do not change outputs (left out of the cache key)
_NOT_IN_KEY = ("batch_size", "chunk_size")


class GenerationError(ValueError):
    pass


class GenerationSettings(BaseModel):
    """How to generate. Everything but ``batch_size``/``chunk_size`` goes into the cache key."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(128, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
    num_beams: int = Field(1, ge=1)
    seed: int = 0
    batch_size: int = Field(8, ge=1)
    chat: bool | None = None
    system: str | None = None
    max_prompt_tokens: int | None = Field(None, ge=2)
    chunk_size: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _check(self):
        if self.do_sample and self.num_beams > 1:
            raise ValueError("do_sample with num_beams > 1 (beam sampling) is not supported; use one of them")
        return self

    def key_dict(self) -> dict:
        """The settings that can change outputs (greedy/beam search ignores the sampling ones)."""
        d = {k: v for k, v in self.model_dump().items() if k not in _NOT_IN_KEY}
        if not self.do_sample:
            for k in ("temperature", "top_p", "top_k", "seed"):
                d.pop(k)
        return d


@dataclass
class GenerationResult:
    texts: list[str]
    token_ids: list[list[int]]
    n_prompts: int = 0
    n_cached: int = 0  # input prompts read from the cache
    n_generated: int = 0  # input prompts produced by this call (n_cached + n_generated == n_prompts)
    n_truncated: int = 0  # prompts cut to max_prompt_tokens (all prompts, cached ones included)
    prompt_tokens: int = 0  # model-input tokens over all prompts (after truncation)
    generated_tokens: int = 0  # generated tokens over all prompts
    seconds: float = 0.0  # wall time of this call
    cache_path: str | None = None
    extra: dict = field(default_factory=dict)

    def stats(self) -> dict:
        """The counts as a plain dict (for metrics.json)."""
        return {k: getattr(self, k) for k in ("n_prompts", "n_cached", "n_generated", "n_truncated", "prompt_tokens",
                                              "generated_tokens", "seconds")}


def _adapter_key(model) -> str | None:
    if not hasattr(model, "peft_config"):
        return None
    from llmrec.llm.tuning import state_hash

    return state_hash({n: p for n, p in model.named_parameters() if "lora_" in n or "modules_to_save" in n})


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------
# cache


def _record_sum(r: dict) -> str:
    """A short checksum of one cached output (every field but the checksum itself)."""
    body = {k: v for k, v in r.items() if k != "c"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _valid_record(r) -> bool:
    if not (isinstance(r, dict) and isinstance(r.get("k"), str) and isinstance(r.get("text"), str)
            and isinstance(r.get("ids"), list)):
        return False
    return "c" not in r or r["c"] == _record_sum(r)  # records written before checksums carry none


def _read_chunks(d: Path) -> dict[str, dict]:
    """Every intact cached output under ``d``. A line that does not parse or whose checksum does not match is skipped
    (one warning per file): only those prompts are generated again."""
    out: dict[str, dict] = {}
    if not d.is_dir():
        return out
    for f in sorted(d.glob("chunk-*.jsonl")):
        try:
            lines = [line for line in f.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            warnings.warn(f"generation cache: ignoring unreadable chunk file {f} ({e})", stacklevel=3)
            continue
        bad = 0
        for line in lines:
            try:
                r = json.loads(line)
            except ValueError:
                r = None
            if _valid_record(r):
                out[r["k"]] = r
            else:
                bad += 1
        if bad:
            warnings.warn(f"generation cache: ignoring {bad} unreadable or corrupt record(s) of {len(lines)} in chunk "
                          f"file {f}; those prompts are generated again", stacklevel=3)
    return out


def _write_chunk(d: Path, recs: list[dict], rank: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    name = f"chunk-{time.strftime('%Y%m%d%H%M%S')}-r{rank}-{uuid.uuid4().hex[:12]}.jsonl"
    tmp = d / f".{name}.tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps({**r, "c": _record_sum(r)}, ensure_ascii=False) + "\n" for r in recs)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, d / name)


# ----------------------------------------------------------------------------------------------------
# sampling that does not depend on the batch


class _GumbelSampler:
    """Adds per-row Gumbel noise (a torch.Generator per prompt) to warped scores; greedy arg-max then samples."""

    def __init__(self, seeds: list[int]):
        self.gens = []
        for s in seeds:
            g = torch.Generator(device="cpu")
            g.manual_seed(int(s))
            self.gens.append(g)

    def __call__(self, input_ids, scores):
        V = scores.shape[-1]
        u = torch.stack([torch.rand(V, generator=g, dtype=torch.float64) for g in self.gens])
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
        return scores.float() + gumbel.to(device=scores.device, dtype=torch.float32)


def _logits_processors(settings: GenerationSettings, seeds: list[int]):
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    lp = LogitsProcessorList()
    if not settings.do_sample:
        return lp
    if settings.temperature != 1.0:
        lp.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k is not None:
        lp.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p < 1.0:
        lp.append(TopPLogitsWarper(settings.top_p))
    lp.append(_GumbelSampler(seeds))
    return lp


# ----------------------------------------------------------------------------------------------------
# the model side


def _eos_ids(backbone) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(backbone.model, "generation_config", None), backbone.model.config, backbone.tokenizer):
        e = getattr(src, "eos_token_id", None)
        if e is None:
            continue
        ids.update(int(x) for x in (e if isinstance(e, (list, tuple)) else [e]))
    return ids


def _tokenize(tok, text: str, add_special: bool, max_tokens: int | None) -> tuple[list[int], bool]:
    ids = tok(text, add_special_tokens=add_special)["input_ids"]
    if max_tokens is None or len(ids) <= max_tokens:
        return ids, False
    bos = tok.bos_token_id
    if bos is not None and ids[0] == bos:
        return [ids[0]] + ids[len(ids) - (max_tokens - 1):], True
    return ids[len(ids) - max_tokens:], True


class _Runner:
    def __init__(self, backbone, settings: GenerationSettings):
        self.bb, self.s = backbone, settings
        tok = backbone.tokenizer
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.eos = _eos_ids(backbone)
        self.stop = set(self.eos) | ({self.pad} if self.pad is not None else set())
        self.fallback = sorted(self.eos)[:1] + ([self.pad] if self.pad is not None else [])
        self.seq2seq = backbone.kind == "seq2seq"
        self.device = next(backbone.model.parameters()).device
        self.gc = self.gen_config()

    def gen_config(self):
        import copy

        s = self.s
        gc = copy.deepcopy(self.bb.model.generation_config)
        gc.max_new_tokens = s.max_new_tokens
        gc.max_length = None
        gc.min_length = 0
        gc.do_sample = False  # sampling = Gumbel noise + arg-max (see _GumbelSampler)
        gc.num_beams = s.num_beams
        gc.num_return_sequences = 1
        gc.repetition_penalty = s.repetition_penalty
        gc.pad_token_id = self.pad
        if gc.eos_token_id is None and self.eos:
            gc.eos_token_id = sorted(self.eos)
        for k in ("temperature", "top_p", "top_k", "min_p", "typical_p"):  # greedy ignores them; avoid warnings
            if hasattr(gc, k):
                setattr(gc, k, None)
        return gc

    @torch.no_grad()
    def run(self, rows: list[list[int]], seeds: list[int], constraints: list | None) -> list[list[int]]:
        from llmrec.llm.decoding import prefix_allowed_tokens_fn

        L = max(len(r) for r in rows)
        B = len(rows)
        ids = torch.full((B, L), self.pad, dtype=torch.long)
        mask = torch.zeros((B, L), dtype=torch.long)
        for b, r in enumerate(rows):
            if self.seq2seq:  # encoder input: right padding
                ids[b, :len(r)] = torch.tensor(r)
                mask[b, :len(r)] = 1
            else:  # causal: left padding, the answer starts at column L for every row
                ids[b, L - len(r):] = torch.tensor(r)
                mask[b, L - len(r):] = 1
        kw = {}
        if constraints is not None:
            kw["prefix_allowed_tokens_fn"] = prefix_allowed_tokens_fn(constraints, 1 if self.seq2seq else L, self.fallback)
        lp = _logits_processors(self.s, seeds)
        if len(lp):
            kw["logits_processor"] = lp
        out = self.bb.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                     generation_config=self.gc, **kw)
        new = out[:, 1:] if self.seq2seq else out[:, L:]
        res = []
        for row in new.tolist():
            cut = len(row)
            for j, t in enumerate(row):
                if t in self.stop:
                    cut = j
                    break
            res.append(row[:cut])
        return res


# ----------------------------------------------------------------------------------------------------
# distributed


def _dist_state(backbone):
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    state = PartialState(cpu=backbone.device.type == "cpu")
    if state.num_processes <= 1:
        return None
    import atexit

    import torch.distributed as dist

    if dist.is_initialized() and not getattr(_dist_state, "_teardown", False):  # a live gloo group at interpreter exit
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())  # can abort the process
        _dist_state._teardown = True
    return state


def _place(backbone, state) -> None:
    dev = next(backbone.model.parameters()).device
    want = torch.device(state.device)
    if dev.type == "cuda" and want.type == "cuda" and dev.index != want.index:
        log.warning("generation: moving the model from %s to %s (process %d)", dev, want, state.process_index)
        backbone.model.to(want)
        backbone.device = want


# ----------------------------------------------------------------------------------------------------
# the entry point


def generate(backbone, prompts: Sequence[str], settings: GenerationSettings | dict | None = None, *,
             cache_dir: str | Path | None = None, template_key: str = "", keys: Sequence[str] | None = None,
             constraints: Sequence | None = None, model_key: str | None = None, progress: bool = True,
             desc: str = "generate", on_chunk: Callable[[int, int], None] | None = None) -> GenerationResult:
    """Generate an answer to every user text in ``prompts`` (see the module docstring).

    ``keys[i]``: extra cache-key text of prompt ``i`` (e.g. the candidate list behind ``constraints[i]``;
    required with constraints and a cache). ``model_key``: extends ``backbone.fingerprint`` in the cache key
    (e.g. ``llmrec.llm.tuning.state_hash`` of tuned weights). ``on_chunk(done, total)``: called after every chunk this
    process writes (an exception raised there stops the run; finished chunks stay cached)."""
    t0 = time.time()
    if settings is None:
        settings = GenerationSettings()
    elif isinstance(settings, dict):
        settings = GenerationSettings(**settings)
    prompts = list(prompts)
    n = len(prompts)
    if not backbone.head or backbone.kind not in ("causal", "seq2seq"):
        raise GenerationError(f"generate needs a causal or seq2seq backbone loaded with head=True "
                              f"(got kind={backbone.kind!r}, head={backbone.head})")
    if keys is not None and len(keys) != n:
        raise GenerationError(f"keys has {len(keys)} entries for {n} prompts")
    if constraints is not None and len(constraints) != n:
        raise GenerationError(f"constraints has {len(constraints)} entries for {n} prompts")
    if constraints is not None and cache_dir is not None and keys is None:
        raise GenerationError("constraints with a cache_dir need keys (e.g. the candidate list of each prompt): "
                              "the cache could not tell two constraints apart")
    tok = backbone.tokenizer
    chat = uses_chat(tok, settings.chat)
    formatted = [as_model_input(tok, p, system=settings.system, chat=settings.chat) for p in prompts]
    ekeys = [_sha([f, "" if keys is None else str(keys[i]), constraints is not None and constraints[i] is not None])[:32]
             for i, f in enumerate(formatted)]

    state = _dist_state(backbone)
    rank, world = (state.process_index, state.num_processes) if state else (0, 1)
    if state is not None:
        _place(backbone, state)
    main = rank == 0

    if model_key is not None:  # the caller names the weights (e.g. "untuned" under peft's disable_adapter())
        mkey = f"{backbone.fingerprint}+{model_key}"
    elif tuned := backbone.info.get("trainable_hash"):  # set by llmrec.llm.tuning after training/loading weights
        mkey = f"{backbone.fingerprint}+{tuned}"
    else:
        ak = _adapter_key(backbone.model)
        mkey = backbone.fingerprint + (f"+adapter:{ak}" if ak else "")
    run_hash = _sha({"v": CACHE_VERSION, "model": mkey, "dtype": str(backbone.dtype), "kind": backbone.kind,
                     "tokenizer": [type(tok).__name__, len(tok)], "template": template_key,
                     "settings": settings.key_dict()})[:20]
    cdir = Path(cache_dir) / "generation" / run_hash if cache_dir is not None else None
    cached = _read_chunks(cdir) if cdir is not None else {}
    if state is not None:  # every process must see the same cache before any of them writes
        state.wait_for_everyone()

    # unique uncached work, in input order, then this process's interleaved shard
    todo: list[int] = []
    seen: set[str] = set()
    for i, k in enumerate(ekeys):
        if k not in cached and k not in seen:
            seen.add(k)
            todo.append(i)
    n_cached = sum(k in cached for k in ekeys)
    mine = todo[rank::world]

    tokd = {i: _tokenize(tok, formatted[i], not chat, settings.max_prompt_tokens) for i in mine}
    if empty := [i for i in mine if not tokd[i][0]]:
        raise GenerationError(f"prompt {empty[0]} is empty after tokenisation (the tokenizer adds no BOS token); "
                              "give every prompt some text")
    show = progress_enabled(progress)
    t_gen = time.time()
    new = _run_shard(backbone, settings, tokd, ekeys, constraints, cdir, rank, desc, show and main, on_chunk)
    if state is not None:
        state.wait_for_everyone()
        if cdir is not None:
            cached = _read_chunks(cdir)
        else:
            from accelerate.utils import gather_object

            for rec in gather_object(list(new.values())):
                new[rec["k"]] = rec
    merged = {**cached, **new}
    missing = [i for i, k in enumerate(ekeys) if k not in merged]
    if missing:
        raise GenerationError(f"generation: {len(missing)} outputs missing after generation (first prompt {missing[0]}); "
                              f"was the cache directory {cdir} changed meanwhile?")
    recs = [merged[k] for k in ekeys]
    res = GenerationResult(
        texts=[r["text"] for r in recs], token_ids=[list(r["ids"]) for r in recs], n_prompts=n, n_cached=n_cached,
        n_generated=n - n_cached, n_truncated=sum(bool(r.get("tr")) for r in recs),
        prompt_tokens=sum(int(r.get("pt", 0)) for r in recs), generated_tokens=sum(len(r["ids"]) for r in recs),
        seconds=time.time() - t0, cache_path=str(cdir) if cdir is not None else None,
        extra={"process_generated": len(mine), "world_size": world},
    )
    dt = max(time.time() - t_gen, 1e-9)
    gen_tokens = sum(len(merged[ekeys[i]]["ids"]) for i in mine)
    line = f"{desc}: {n} prompts ({n_cached} cached, {n - n_cached} generated, {res.n_truncated} truncated)"
    if mine:
        line += (f"; {len(mine)} prompts, {gen_tokens} tokens generated in {dt:.1f}s = {len(mine) / dt:.2f} prompts/s, "
                 f"{gen_tokens / dt:.1f} tok/s" + (f" (process {rank} of {world})" if world > 1 else ""))
    log.info(line)
    if show and main:
        print(line, file=sys.stderr, flush=True)
    return res


def _run_split(runner, rows, seeds, cons) -> list[list[int]]:
    """``runner.run``, halving the batch on CUDA out-of-memory (outputs do not depend on the batch)."""
    try:
        return runner.run(rows, seeds, cons)
    except torch.cuda.OutOfMemoryError:
        if len(rows) == 1:
            raise
    torch.cuda.empty_cache()
    h = len(rows) // 2
    log.warning("generation: out of GPU memory with %d prompts of up to %d tokens; halving the batch", len(rows),
                max(map(len, rows)))
    return (_run_split(runner, rows[:h], seeds[:h], cons[:h] if cons else None)
            + _run_split(runner, rows[h:], seeds[h:], cons[h:] if cons else None))


def _run_shard(backbone, settings, tokd, ekeys, constraints, cdir, rank, desc, show, on_chunk) -> dict[str, dict]:
    """Generate this process's prompts (``tokd``: index -> (ids, truncated)) longest first; write chunk files."""
    from llmrec.utils.progress import make_progress

    tok = backbone.tokenizer
    runner = _Runner(backbone, settings)
    order = sorted(tokd, key=lambda i: (-len(tokd[i][0]), i))
    new: dict[str, dict] = {}
    buf: list[dict] = []
    gen_tokens, t0, last_line = 0, time.time(), time.time()
    bar = make_progress() if show else None
    task = bar.add_task(desc, total=len(order), info="") if bar else None
    quiet_bar = bar is not None and bar.disable  # no terminal (nohup logs): a status line per minute instead
    if bar:
        bar.start()
    try:
        for b0 in range(0, len(order), settings.batch_size):
            idx = order[b0:b0 + settings.batch_size]
            seeds = [int(_sha([settings.seed, ekeys[i]])[:15], 16) for i in idx]
            cons = None
            if constraints is not None and any(constraints[i] is not None for i in idx):
                free = _Free(int(backbone.model.get_output_embeddings().weight.shape[0]))
                cons = [constraints[i] if constraints[i] is not None else free for i in idx]
            for i, ids in zip(idx, _run_split(runner, [tokd[i][0] for i in idx], seeds, cons)):
                rec = {"k": ekeys[i], "text": tok.decode(ids, skip_special_tokens=True).strip(), "ids": ids,
                       "pt": len(tokd[i][0]), "tr": bool(tokd[i][1])}
                new[ekeys[i]] = rec
                buf.append(rec)
                gen_tokens += len(ids)
            if len(buf) >= settings.chunk_size or b0 + settings.batch_size >= len(order):
                if cdir is not None:
                    _write_chunk(cdir, buf, rank)
                buf = []
                if on_chunk is not None:
                    on_chunk(len(new), len(order))
            if bar:
                dt = max(time.time() - t0, 1e-9)
                info = f"{len(new) / dt:.2f} prompts/s {gen_tokens / dt:.0f} tok/s"
                bar.update(task, advance=len(idx), info=info)
                if quiet_bar and time.time() - last_line > 60:
                    last_line = time.time()
                    print(f"{desc}: {len(new)}/{len(order)} prompts, {info}", file=sys.stderr, flush=True)
    finally:
        if bar:
            bar.stop()
    return new


class _Free:
    """No constraint (a row without one in a constrained batch): every token is allowed."""

    def __init__(self, vocab: int):
        self.all = list(range(vocab))

    def allowed(self, tokens):
        return self.all
