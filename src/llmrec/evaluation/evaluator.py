"""The one evaluator every model goes through.

Protocols:

- ``full``: the target is ranked against the whole item set. With ``mask_history`` (default) the items of
  the row's history are removed from the ranking — except the target itself, which is never masked.
- ``sampled``: the target is ranked inside the row's candidate set (column 0 = target), as in 1:N protocols.

Ranks are pessimistic (see :mod:`llmrec.evaluation.metrics`): every other item with a score >= the target's
counts ahead of it, so a model that scores everything equally gets HR@10 ~ 0.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from llmrec.data.splits import EvalSet
from llmrec.evaluation.metrics import (
    MetricAccumulator,
    candidate_ranks,
    candidate_ties,
    multi_target_metrics,
    pessimistic_rank,
    pessimistic_rank_excluding,
    single_target_metrics,
)
from llmrec.models.base import HistoryBatch
from llmrec.utils.progress import progress_iter

DEFAULT_KS = (1, 5, 10, 20)


@torch.no_grad()
def evaluate(
    model,
    eval_set: EvalSet,
    *,
    n_items: int | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    mask_history: bool = True,
    protocol: str = "full",
    batch_size: int = 512,
    progress: bool = True,
    keep_rows: bool = False,
    max_elements: int | None = 2**25,
) -> dict:
    """Evaluate ``model`` on ``eval_set``; returns ``{"metrics": {...}, "n": int, "seconds": float, ...}``.

    Memory: a batch is at most ``batch_size`` users and, with full ranking, at most ``max_elements`` scores
    (users x items; 2**25 float32 = 128 MiB), so the evaluator's memory stays bounded however large the
    catalogue (1M items: 32 users per batch)."""
    n_items = n_items or model.n_items
    if max_elements is not None and protocol == "full":
        batch_size = max(1, min(batch_size, max_elements // max(n_items, 1)))
    t0 = time.perf_counter()
    acc = MetricAccumulator(keep_rows=keep_rows)
    n = len(eval_set)
    if protocol == "sampled" and eval_set.candidates is None:
        raise ValueError("protocol 'sampled' needs candidate sets (split.candidates in the config)")
    starts = range(0, n, batch_size)
    if hasattr(model, "begin_eval"):
        model.begin_eval(eval_set.name)
    for s in progress_iter(starts, total=len(starts), desc=f"eval {eval_set.name}", enabled=progress):
        idx = np.arange(s, min(s + batch_size, n))
        sess = getattr(eval_set, "sessions", None)
        batch = HistoryBatch(eval_set.users[idx], [eval_set.histories[i] for i in idx],
                             sessions=None if sess is None else [sess[i] for i in idx])
        if protocol == "sampled":
            cand = torch.from_numpy(eval_set.candidates[idx])
            scores = model.score_candidates(batch, cand).float()
            _check_shape(scores, (len(idx), cand.shape[1]), model)
            ranks = candidate_ranks(scores, 0)
            acc.add({**single_target_metrics(ranks, ks), "TieRate": candidate_ties(scores, 0)})
            continue
        scores = model.score(batch).float()
        _check_shape(scores, (len(idx), n_items), model)
        if eval_set.target_sets is not None:
            exclude = batch.history_mask(n_items) if mask_history else None
            tgt = torch.zeros((len(idx), n_items), dtype=torch.bool)
            for r, i in enumerate(idx):
                tgt[r, torch.from_numpy(np.asarray(eval_set.target_sets[i], dtype=np.int64))] = True
            acc.add(multi_target_metrics(scores, tgt, exclude, ks))
        else:
            targets = torch.from_numpy(eval_set.targets[idx].astype(np.int64))
            if mask_history:  # the history lists, not a (B, n_items) mask: cost grows with the history, not the catalogue
                ranks = pessimistic_rank_excluding(scores, targets, batch.histories)
            else:
                ranks = pessimistic_rank(scores, targets)
            acc.add(single_target_metrics(ranks, ks))
    out = {"metrics": acc.result(), "n": acc.count, "seconds": time.perf_counter() - t0}
    report = model.end_eval() if hasattr(model, "end_eval") else {}
    if report:
        out["model_report"] = report
    if keep_rows:
        out["rows"] = acc.rows()
    return out


def _check_shape(scores: torch.Tensor, shape: tuple, model) -> None:
    if tuple(scores.shape) != tuple(shape):
        raise ValueError(f"model {getattr(model, 'name', model)!r} returned scores of shape {tuple(scores.shape)}, expected {shape}")


def scores_from_lists(lists: Sequence[Sequence[int]], n_items: int) -> torch.Tensor:
    """(B, n_items) scores for models that return ranked lists (PALR, GenRec): listed items get descending
    scores in list order, every other item -inf. With pessimistic ties an unlisted target ranks after every
    listed item *and* every other unlisted item, so it is a miss at any cutoff within the list length."""
    out = torch.full((len(lists), n_items), float("-inf"))
    for r, items in enumerate(lists):
        if len(items):
            idx = torch.as_tensor(list(items), dtype=torch.long)
            out[r, idx] = torch.arange(len(items), 0, -1, dtype=torch.float32)
    return out
