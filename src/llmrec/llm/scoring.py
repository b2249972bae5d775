"""Scoring candidates with a causal LM, fast: a shared-prefix KV cache per user.

LLM-TRSR asks "will the user like <candidate>? Answer Yes or No:" for every candidate of a user, and PALR
ranks candidates by their likelihood as the answer. The prompts of one user share a long prefix (instruction,
profile or summary, recent items); only the short candidate part differs. Here the prefix is encoded once
(``use_cache=True``), and the candidate suffixes then run as one right-padded batch on top of a copy of its
KV cache (repeated over the batch; attention mask = ones over the prefix + the suffix mask; position ids
continuing after the prefix). On the 2-core CPU this is ~3x faster than scoring whole prompts
(../shared/specs/llm-cpu-throughput.md). ``use_prefix_cache=False`` scores each prefix + suffix as one
sequence instead (the reference; both paths agree to ~1e-6 in fp32).

Token ids are always ``encode_prefix(prefix) + encode_suffix(suffix)`` -- the two strings are tokenised
separately (the prefix with the tokenizer's special tokens such as BOS, unless the text already starts with a
special token, as chat-template text does; the suffix without), so the cached and uncached paths see identical
ids and instruction tuning (:mod:`llmrec.llm.tuning`) draws its prompt/response boundary the same way. Callers
build the strings with :func:`llmrec.llm.prompts.as_model_input`; a suffix ends right before the answer token.

- :func:`yes_no_scores`: P(yes) at the position after each suffix: ``mode="softmax"`` = softmax over the
  [yes, no] logits (LLM-TRSR's code), ``"yes_prob"`` = the full-vocabulary probability (the paper's Eq. 3).
  ``yes`` / ``no`` are strings that must be single tokens (e.g. ``" Yes"`` after "Answer Yes or No:" in raw
  text, ``"Yes"`` as the first token of a chat answer).
- :func:`continuation_logprobs`: the log-likelihood of each continuation given its prefix, summed or averaged
  over its tokens.

Both run under ``torch.no_grad`` in eval mode and restore the model's train/eval mode afterwards. Only the
logits that are needed are projected onto the vocabulary (``logits_to_keep``), so long suffix batches stay
cheap on large vocabularies. Suffixes are sorted by length within a user before batching (less padding).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Sequence

import numpy as np
import torch

from llmrec.utils.padding import pad_rows
from llmrec.utils.progress import progress_iter


class ScoringError(ValueError):
    pass


# ----------------------------------------------------------------------------------------------------
# tokenisation shared with instruction tuning


def _special_strings(tokenizer) -> list[str]:
    out = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for t in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(t, "special", False):
            out.add(t.content)
    return [x for x in out if x]


def encode_prefix(tokenizer, text: str) -> list[int]:
    """Ids of model-input text: with the tokenizer's special tokens (e.g. Llama's BOS) for plain text; without
    them when the text already starts with a special token, as chat-template text does (``<s>``,
    ``<|im_start|>``, ``<|begin_of_text|>``), which is how ``apply_chat_template`` and generation tokenise it."""
    add = not any(text.startswith(s) for s in _special_strings(tokenizer))
    return list(tokenizer(text, add_special_tokens=add)["input_ids"])


def encode_suffix(tokenizer, text: str) -> list[int]:
    """Ids of text that continues a prefix (no special tokens)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def single_token_id(tokenizer, word: str) -> int:
    ids = encode_suffix(tokenizer, word)
    if len(ids) != 1:
        raise ScoringError(f"answer word {word!r} is {len(ids)} tokens {ids} for this tokenizer, not one; "
                           "use a word that is a single token (e.g. ' Yes' vs 'Yes')")
    return ids[0]


# ----------------------------------------------------------------------------------------------------
# model plumbing (transformers 4.x and 5.x)


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def logits_kw_supported(model) -> bool:
    """True when the model accepts a per-row ``logits_to_keep`` tensor (transformers >= 5)."""
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401
    except ImportError:
        return False
    try:
        return "logits_to_keep" in inspect.signature(_base(model).forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def _cache_kw(model) -> str:
    try:
        params = inspect.signature(_base(model).forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _out_cache(out):
    if hasattr(out, "cache"):  # transformers >= 5 (reading .past_key_values there warns)
        return out.cache
    return getattr(out, "past_key_values", None)


def _expand_cache(cache, b: int):
    """A fresh copy of the prefix cache repeated ``b`` times over the batch (the original is never mutated)."""
    if isinstance(cache, tuple):  # legacy tuple format
        return tuple(tuple(t.expand(b, *t.shape[1:]).contiguous() for t in layer) for layer in cache)
    c = copy.deepcopy(cache)
    if b > 1:
        c.batch_repeat_interleave(b)
    return c


def _slice(hidden: torch.Tensor, keep) -> torch.Tensor:
    """What ``slice_logits_to_keep`` does, applied to full logits (fallback for older transformers)."""
    if isinstance(keep, int):
        return hidden[:, -keep:] if keep else hidden
    if keep.dtype == torch.bool:
        return hidden[keep]
    return torch.take_along_dim(hidden, keep[..., None], dim=1)


class _Runner:
    def __init__(self, backbone):
        if backbone.kind != "causal" or not backbone.head:
            raise ScoringError(f"scoring needs a causal LM loaded with head=True (got {backbone.kind}, head={backbone.head})")
        self.model = backbone.model
        self.tok = backbone.tokenizer
        self.device = backbone.device
        self.keep_ok = logits_kw_supported(self.model)
        self.cache_kw = _cache_kw(self.model)
        t = self.tok
        self.pad = next(x for x in (t.pad_token_id, t.eos_token_id, 0) if x is not None)

    def logits(self, keep, **kw) -> tuple[torch.Tensor, object]:
        if self.keep_ok:
            out = self.model(logits_to_keep=keep, **kw)
            return out.logits, _out_cache(out)
        out = self.model(**kw)
        return _slice(out.logits, keep), _out_cache(out)

    def pad_batch(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, lens = pad_rows(seqs, pad=self.pad)
        mask = (np.arange(ids.shape[1]) < lens[:, None]).astype(np.int64)
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)

    def prefix(self, p_ids: list[int]):
        ids = torch.tensor([p_ids], dtype=torch.long, device=self.device)
        logits, cache = self.logits(1, input_ids=ids, use_cache=True)
        return logits[0, -1].float(), cache

    def chunk(self, p_ids, p_state, sufs: list[list[int]], need: str, cached: bool):
        """``last``: (b, V) logits after each suffix; ``all``: list of (n_j, V) logits predicting suffix tokens."""
        P, b = len(p_ids), len(sufs)
        n = torch.tensor([len(s) for s in sufs], device=self.device)
        if cached:
            p_last, cache = p_state
            if int(n.max()) == 0 or (need == "all" and int(n.max()) <= 1):
                rows = None
            else:
                ids, smask = self.pad_batch(sufs)
                S = ids.shape[1]
                attn = torch.cat([torch.ones((b, P), dtype=torch.long, device=self.device), smask], dim=1)
                pos = (P + torch.arange(S, device=self.device)).expand(b, S)
                kw = {"input_ids": ids, "attention_mask": attn, "position_ids": pos, "use_cache": True,
                      self.cache_kw: _expand_cache(cache, b)}
                if need == "last":
                    rows, _ = self.logits((n - 1).clamp(min=0)[:, None], **kw)
                    rows = rows[:, 0].float()
                else:
                    keep = torch.arange(S, device=self.device)[None, :] < (n - 1)[:, None]
                    rows, _ = self.logits(keep, **kw)
                    rows = rows.float()
            if need == "last":
                out = p_last.expand(b, -1).clone()
                if rows is not None:
                    out[n > 0] = rows[n > 0]
                return out
            res, off = [], 0
            for j in range(b):
                k = int(n[j])
                parts = [p_last[None]] + ([rows[off:off + k - 1]] if k > 1 else [])
                off += max(k - 1, 0)
                res.append(torch.cat(parts, 0)[:k])
            return res
        # the reference: prefix + suffix as one sequence
        ids, mask = self.pad_batch([p_ids + s for s in sufs])
        kw = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
        if need == "last":
            rows, _ = self.logits((P + n - 1)[:, None], **kw)
            return rows[:, 0].float()
        L = ids.shape[1]
        ar = torch.arange(L, device=self.device)[None, :]
        keep = (ar >= P - 1) & (ar < (P - 1 + n)[:, None])
        rows, _ = self.logits(keep, **kw)
        rows, res, off = rows.float(), [], 0
        for j in range(b):
            k = int(n[j])
            res.append(rows[off:off + k])
            off += k
        return res


@contextlib.contextmanager
def _eval_no_grad(model):
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def _run(backbone, prefixes, suffix_lists, need, per_row, use_prefix_cache, batch_size, progress, desc):
    if len(prefixes) != len(suffix_lists):
        raise ScoringError(f"{len(prefixes)} prefixes but {len(suffix_lists)} suffix lists")
    if batch_size < 1:
        raise ScoringError(f"batch_size must be >= 1, got {batch_size}")
    r = _Runner(backbone)
    results: list[np.ndarray] = []
    with _eval_no_grad(r.model):
        for prefix, sufs in progress_iter(zip(prefixes, suffix_lists), total=len(prefixes), desc=desc, enabled=progress):
            p_ids = encode_prefix(r.tok, prefix)
            if not p_ids:
                raise ScoringError("an empty prefix (no tokens) cannot be scored: the first token needs a context")
            s_ids = [encode_suffix(r.tok, s) for s in sufs]
            out = np.zeros(len(s_ids), dtype=np.float64)
            if s_ids:
                p_state = r.prefix(p_ids) if use_prefix_cache else None
                order = np.argsort([len(s) for s in s_ids], kind="stable")
                for c0 in range(0, len(order), batch_size):
                    idx = order[c0:c0 + batch_size]
                    chunk = [s_ids[i] for i in idx]
                    res = r.chunk(p_ids, p_state, chunk, need, use_prefix_cache)
                    out[idx] = per_row(res, chunk)
            results.append(out)
    return results


# ----------------------------------------------------------------------------------------------------
# public API


def yes_no_scores(backbone, prefixes: Sequence[str], suffix_lists: Sequence[Sequence[str]], *, yes: str, no: str,
                  mode: str = "softmax", use_prefix_cache: bool = True, batch_size: int = 32,
                  progress: bool = True) -> list[np.ndarray]:
    """P(yes) after ``prefix + suffix`` for every suffix of every prefix: one array per prefix.

    ``mode="softmax"``: softmax over the [yes, no] logits; ``"yes_prob"``: softmax over the whole vocabulary."""
    if mode not in ("softmax", "yes_prob"):
        raise ScoringError(f"yes_no_scores mode must be 'softmax' or 'yes_prob', got {mode!r}")
    y, n = single_token_id(backbone.tokenizer, yes), single_token_id(backbone.tokenizer, no)
    if y == n:
        raise ScoringError(f"yes {yes!r} and no {no!r} are the same token")

    def per_row(logits: torch.Tensor, _chunk) -> np.ndarray:
        if mode == "softmax":
            p = torch.softmax(logits[:, [y, n]], dim=-1)[:, 0]
        else:
            p = torch.softmax(logits, dim=-1)[:, y]
        return p.double().cpu().numpy()

    return _run(backbone, prefixes, suffix_lists, "last", per_row, use_prefix_cache, batch_size, progress, "yes/no")


def continuation_logprobs(backbone, prefixes: Sequence[str], continuation_lists: Sequence[Sequence[str]], *,
                          reduce: str = "mean", use_prefix_cache: bool = True, batch_size: int = 32,
                          progress: bool = True) -> list[np.ndarray]:
    """log P(continuation | prefix), summed (``reduce="sum"``) or averaged per token (``"mean"``)."""
    if reduce not in ("mean", "sum"):
        raise ScoringError(f"continuation_logprobs reduce must be 'mean' or 'sum', got {reduce!r}")

    def per_row(rows: list[torch.Tensor], chunk: list[list[int]]) -> np.ndarray:
        vals = []
        for logits, ids in zip(rows, chunk):
            if not ids:
                raise ScoringError("an empty continuation has no likelihood to score")
            lp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids, device=logits.device)[:, None])[:, 0]
            vals.append(float(lp.double().sum() / (len(ids) if reduce == "mean" else 1)))
        return np.asarray(vals, dtype=np.float64)

    return _run(backbone, prefixes, continuation_lists, "all", per_row, use_prefix_cache, batch_size, progress,
                "likelihood")
