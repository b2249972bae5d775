"""The records protocol (``split.protocol: records``): LLM-TRSR's one-record-per-user setting.

A **record** is one user's last interaction (the target) with the up to ``max_history`` interactions before
it (the history window); users with fewer than ``min_history`` earlier interactions are dropped (the paper
keeps records with 10-25 history items). The eligible users are shuffled with ``seed`` and cut into test,
validation and training records, in that order, so the test users do not change when only the number of
training records does. ``sizes`` are the paper's 10,000 / 1,000 / 1,000; with fewer eligible users
``fit: proportional`` scales all three down in the same ratio (``exact`` refuses).

Validation and test records are ranked inside sampled candidate sets (``split.candidates``: 1 positive +
``n_neg`` negatives, column 0 the positive). Negatives come from the **training items** (items that occur in
the training sequences below), uniformly or by training popularity, distinct, seeded (``candidates.seed`` + 1
for validation, + 2 for test, + 3 for the training records' negatives). ``neg_exclude: true`` (default) never
draws an item of the record's history or its positive; ``false`` is the paper's code
(``df_products['id'].sample(n=20)`` over the whole catalogue, no exclusion), where a negative may be the positive
itself and then ties with it (pessimistic ranks count that against the model).

Training records carry ``train_negatives`` negatives (the paper's 1:1) drawn the same way, so every LLM system
on the same split trains on the same pairs.

What the ID models (SASRec, GRU4Rec, Pop...) fit on, ``split.train`` per user:

- ``train_sequences: all`` (default): every user's sequence, with the target of each validation / test
  record removed (their histories stay: they are inputs at test time); users who are not records, or who
  are eligible but not drawn, keep their whole sequence;
- ``records``: only the records: a training record's history window + target, a validation / test record's
  history window.

Either way no validation or test target is in any training sequence (checked). ``require_text: true`` first
drops every interaction with an item that has no text (the MIND sample, where news.tsv and behaviors.tsv were
sampled independently), so that records and training sequences only hold items an LLM can read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmrec.data.dataset import Dataset
from llmrec.data.splits import EvalSet, Split


class RecordsConfig(BaseModel):
    """Keys of ``split.records`` (used by ``split.protocol: records``)."""

    model_config = ConfigDict(extra="forbid")
    sizes: list[int] = Field(default_factory=lambda: [10000, 1000, 1000],
                             description="[train, valid, test] records (the paper: 10,000 / 1,000 / 1,000)")
    fit: Literal["proportional", "exact"] = Field(
        "proportional", description="fewer eligible users than sum(sizes): scale the sizes down (proportional) or fail")
    min_history: int = Field(10, ge=1, description="drop users with fewer history items before their last one")
    max_history: int = Field(25, ge=1, description="history window: at most this many items before the target")
    seed: int = Field(0, description="seed of the user shuffle that assigns records to train / valid / test")
    neg_exclude: bool = Field(True, description="negatives never in the record's history or its positive "
                                                "(false: the paper's uniform sampling without exclusion)")
    train_negatives: int = Field(1, ge=0, description="negatives per training record (the paper's 1:1)")
    train_sequences: Literal["all", "records"] = Field(
        "all", description="what ID models fit on: every user's sequence minus valid/test targets, or only the records")
    require_text: bool = Field(False, description="drop interactions with items without text first (MIND sample)")

    @field_validator("sizes")
    @classmethod
    def _three(cls, v: list[int]) -> list[int]:
        if len(v) != 3 or any(x < 0 for x in v) or v[1] < 1 or v[2] < 1:
            raise ValueError("sizes must be [train >= 0, valid >= 1, test >= 1]")
        return v


@dataclass
class RecordsSplit(Split):
    """A :class:`Split` that also carries the training records (history window, target, negatives)."""

    train_records: EvalSet | None = None


def items_with_text(ds: Dataset) -> np.ndarray:
    """(n_items,) bool: the item has a non-empty value in some text column."""
    out = np.zeros(ds.n_items, dtype=bool)
    cols = ds.text_columns()
    for r in ds.item_text.iter_rows(named=True):
        i = r["item"]
        if i is None or not (0 <= i < ds.n_items):
            continue
        for c in cols:
            v = r.get(c)
            if v is not None and str(v).strip() and str(v).strip().lower() not in ("nan", "none", "null"):
                out[i] = True
                break
    return out


def fitted_sizes(sizes: list[int], n_eligible: int, fit: str) -> list[int]:
    """[train, valid, test] that fit into ``n_eligible`` users (proportional scaling keeps valid, test >= 1)."""
    total = sum(sizes)
    if total <= n_eligible:
        return list(sizes)
    if fit == "exact":
        raise ValueError(f"split.records.sizes {sizes} needs {total} eligible users but only {n_eligible} have enough "
                         "history (use split.records.fit: proportional or smaller sizes)")
    if n_eligible < 2:
        raise ValueError(f"split.records: only {n_eligible} users have enough history for validation and test records")
    k = n_eligible / total
    valid, test = max(1, int(sizes[1] * k)), max(1, int(sizes[2] * k))
    train = min(int(sizes[0] * k), n_eligible - valid - test)
    return [max(0, train), valid, test]


def sample_negatives(
    histories: list[np.ndarray],
    positives: np.ndarray,
    pool: np.ndarray,
    n_neg: int,
    *,
    exclude: bool = True,
    weights: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """(M, n_neg) distinct negatives per row from ``pool`` (item indices), uniform or ``weights`` (per pool item).

    ``exclude``: never the row's positive or a history item; otherwise anything in the pool (the paper's code)."""
    rng = np.random.default_rng(seed)
    p = None
    if weights is not None:
        p = np.asarray(weights, dtype=np.float64) + 1e-12
        p = p / p.sum()
    M = len(positives)
    out = np.empty((M, n_neg), dtype=np.int64)
    pool_set = set(pool.tolist())
    for r in range(M):
        banned = (set(histories[r].tolist()) | {int(positives[r])}) if exclude else set()
        if len(pool_set) - len(banned & pool_set) < n_neg:
            raise ValueError(f"record {r}: fewer than {n_neg} training items are left to sample negatives from")
        chosen: list[int] = []
        seen: set[int] = set()
        while len(chosen) < n_neg:
            for x in pool[rng.choice(len(pool), size=2 * (n_neg - len(chosen)) + 8, p=p)].tolist():
                if x not in banned and x not in seen:
                    seen.add(x)
                    chosen.append(x)
                    if len(chosen) == n_neg:
                        break
        out[r] = chosen
    return out


def random_reference(n_candidates: int, ks: Sequence[int] = (3, 5, 10)) -> dict[str, float]:
    """Expected Recall / MRR / NDCG @k of a uniformly random order of ``n_candidates`` (one positive)."""
    out: dict[str, float] = {}
    for k in ks:
        kk = min(k, n_candidates)
        out[f"Recall@{k}"] = kk / n_candidates
        out[f"MRR@{k}"] = sum(1.0 / r for r in range(1, kk + 1)) / n_candidates
        out[f"NDCG@{k}"] = sum(1.0 / math.log2(r + 1) for r in range(1, kk + 1)) / n_candidates
    return out


def records_split(ds: Dataset, split_cfg) -> RecordsSplit:
    """The records split of ``ds`` under ``split_cfg`` (a :class:`llmrec.config.RecordsSplit`)."""
    rc: RecordsConfig = split_cfg.records
    cc = split_cfg.candidates
    if rc.max_history < rc.min_history:
        raise ValueError(f"split.records.max_history ({rc.max_history}) < min_history ({rc.min_history})")
    seqs = ds.sequences()
    info: dict = {}
    if rc.require_text:
        has = items_with_text(ds)
        before = sum(len(s) for s in seqs)
        seqs = [s[has[s]] for s in seqs]
        after = sum(len(s) for s in seqs)
        info["require_text"] = {"items_with_text": int(has.sum()), "interactions_kept": int(after),
                                "interactions_dropped": int(before - after)}
    lens = np.array([len(s) for s in seqs])
    eligible = np.flatnonzero(lens >= rc.min_history + 1)
    n_train, n_valid, n_test = fitted_sizes(rc.sizes, len(eligible), rc.fit)
    perm = np.random.default_rng(rc.seed).permutation(eligible)
    test_u = np.sort(perm[:n_test])
    valid_u = np.sort(perm[n_test: n_test + n_valid])
    train_u = np.sort(perm[n_test + n_valid: n_test + n_valid + n_train])

    def window(u: int) -> np.ndarray:
        s = seqs[u]
        return s[max(0, len(s) - 1 - rc.max_history): len(s) - 1]

    held = np.zeros(ds.n_users, dtype=bool)
    held[test_u] = held[valid_u] = True
    if rc.train_sequences == "all":
        train = [s[:-1] if held[u] else s for u, s in enumerate(seqs)]
    else:
        train = [np.zeros(0, dtype=np.int64) for _ in range(ds.n_users)]
        for u in train_u:
            s = seqs[u]
            train[u] = s[max(0, len(s) - 1 - rc.max_history):]
        for u in np.concatenate([valid_u, test_u]):
            train[u] = window(u)

    nonempty = [s for s in train if len(s)]
    flat = np.concatenate(nonempty) if nonempty else np.zeros(0, dtype=np.int64)
    counts = np.bincount(flat, minlength=ds.n_items)
    pool = np.flatnonzero(counts > 0)
    weights = counts[pool] if cc.strategy == "popularity" else None
    if cc.strategy not in ("uniform", "popularity"):  # pragma: no cover - guarded by the config type
        raise ValueError(cc.strategy)

    def make(users: np.ndarray, name: str, n_neg: int, seed_off: int) -> EvalSet:
        hist = [window(int(u)) for u in users]
        tgt = np.array([seqs[int(u)][-1] for u in users], dtype=np.int64)
        es = EvalSet(users=users.astype(np.int64), histories=hist, targets=tgt, name=name)
        neg = sample_negatives(hist, tgt, pool, n_neg, exclude=rc.neg_exclude, weights=weights, seed=cc.seed + seed_off)
        es.candidates = np.concatenate([tgt[:, None], neg], axis=1)
        return es

    valid = make(valid_u, "valid", cc.n_neg, 1)
    test = make(test_u, "test", cc.n_neg, 2)
    train_records = make(train_u, "train", rc.train_negatives, 3)

    # no validation / test target may be in a training sequence
    for es in (valid, test):
        for u, t in zip(es.users, es.targets):
            s = train[int(u)]
            if len(s) and len(s) >= len(seqs[int(u)]):
                raise AssertionError(f"user {u}: the {es.name} target is in its training sequence")
    hist_lens = np.array([len(h) for es in (train_records, valid, test) for h in es.histories] or [0])

    def collisions(es: EvalSet) -> int:  # negatives equal to the positive or in the history (no-exclusion sampling)
        return int(sum(int(np.isin(es.candidates[r, 1:], np.append(es.histories[r], es.targets[r])).any())
                       for r in range(len(es))))

    info.update({
        "records_eligible_users": len(eligible),
        "records_dropped_short_users": int(ds.n_users - len(eligible)),
        "records_requested": list(rc.sizes),
        "records": {"train": int(n_train), "valid": int(n_valid), "test": int(n_test)},
        "records_history_mean": float(hist_lens.mean()),
        "records_history_range": [int(hist_lens.min()), int(hist_lens.max())],
        "records_neg_exclude": rc.neg_exclude,
        "records_negatives": {"valid_test": cc.n_neg, "train": rc.train_negatives, "strategy": cc.strategy,
                              "pool": "training items", "pool_size": len(pool)},
        "records_rows_with_colliding_negative": {"valid": collisions(valid), "test": collisions(test)},
        "records_train_sequences": rc.train_sequences,
        "records_random_reference": random_reference(1 + cc.n_neg, (1, 3, 5, 10, 20)),
    })
    return RecordsSplit(ds, "records", train, valid, test, info=info, train_records=train_records)
