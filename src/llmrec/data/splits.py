"""Train / validation / test splits and sampled candidate sets.

Leave-one-out (``loo``), the protocol of SASRec, BERT4Rec, P5, PALR and GenRec:
each user's last item is the test target, the second-to-last the validation target, the rest is training.
The validation history is ``seq[:-2]``; the test history is ``seq[:-1]`` — it *includes* the validation item,
as in every reference implementation. Models are fit on the training part only, so nothing of the
validation or test targets is seen in training. Users with fewer than 3 interactions keep their whole
sequence for training and are not evaluated (the count is recorded).

Sessions (:func:`sessionize`): a new session starts when the idle gap to the previous interaction is
*strictly greater* than ``gap`` seconds (a gap of exactly ``gap`` stays in the same session).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from llmrec.data.dataset import Dataset


@dataclass
class EvalSet:
    """Examples to rank: one history and one target item per row (``targets``) or a set (``target_sets``)."""

    users: np.ndarray  # (M,) user index
    histories: list[np.ndarray]  # M arrays of item indices, chronological
    targets: np.ndarray | None = None  # (M,) single target
    target_sets: list[np.ndarray] | None = None  # multi-target (a whole next session)
    candidates: np.ndarray | None = None  # (M, C) sampled candidate sets, column 0 = target
    name: str = "test"
    sessions: list[list[np.ndarray]] | None = None  # session protocol: per row, the history cut into sessions (last = current prefix)

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, idx: np.ndarray) -> "EvalSet":
        return EvalSet(
            users=self.users[idx],
            histories=[self.histories[i] for i in idx],
            targets=None if self.targets is None else self.targets[idx],
            target_sets=None if self.target_sets is None else [self.target_sets[i] for i in idx],
            candidates=None if self.candidates is None else self.candidates[idx],
            name=self.name,
            sessions=None if self.sessions is None else [self.sessions[i] for i in idx],
        )


@dataclass
class Split:
    """What a model is fit on, and what it is evaluated on."""

    dataset: Dataset
    protocol: str
    train: list[np.ndarray]  # per user index (may be empty): the training sequence
    valid: EvalSet
    test: EvalSet
    info: dict = field(default_factory=dict)
    train_sessions: list[list[np.ndarray]] | None = None  # session protocol: per user, list of sessions
    extra_tests: dict[str, EvalSet] = field(default_factory=dict)  # protocol name -> further test set (same fit)

    @property
    def n_users(self) -> int:
        return self.dataset.n_users

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    def sizes(self) -> dict:
        return {
            "train_interactions": int(sum(len(s) for s in self.train)),
            "valid_examples": len(self.valid),
            "test_examples": len(self.test),
            **self.info,
        }


def leave_one_out(ds: Dataset) -> Split:
    seqs = ds.sequences()
    lens = ds.lengths()
    ev = np.flatnonzero(lens >= 3)
    train = [s[:-2] if len(s) >= 3 else s for s in seqs]
    valid = EvalSet(
        users=ev, histories=[seqs[u][:-2] for u in ev], targets=np.array([seqs[u][-2] for u in ev], dtype=np.int64),
        name="valid",
    )
    test = EvalSet(
        users=ev, histories=[seqs[u][:-1] for u in ev], targets=np.array([seqs[u][-1] for u in ev], dtype=np.int64),
        name="test",
    )
    return Split(ds, "loo", train, valid, test, info={"users_not_evaluated": int((lens < 3).sum())})


def sessionize(ds: Dataset, gap: int = 1800) -> np.ndarray:
    """Session id per interaction (global, increasing): new session when the idle gap is > ``gap`` seconds."""
    if not ds.has_timestamps:
        raise ValueError(f"dataset {ds.name!r} has no timestamps: sessions by idle gap need them")
    new = np.ones(ds.n_interactions, dtype=bool)
    if ds.n_interactions > 1:
        new[1:] = np.diff(ds.seq_order) > gap
    new[ds.user_ptr[:-1]] = True  # every user starts a new session
    return np.cumsum(new) - 1


def sample_candidates(
    eval_set: EvalSet,
    n_items: int,
    n_neg: int,
    *,
    strategy: str = "uniform",
    popularity: np.ndarray | None = None,
    exclude: list[np.ndarray] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """(M, 1 + n_neg) candidate matrix, column 0 the target, then ``n_neg`` distinct negatives per row.

    Negatives are never the target, never in the row's history, never in ``exclude[row]`` (e.g. the user's
    whole sequence), drawn uniformly or by popularity, seeded."""
    if eval_set.targets is None:
        raise ValueError("sampled candidates need single-target examples")
    rng = np.random.default_rng(seed)
    p = None
    if strategy == "popularity":
        if popularity is None:
            raise ValueError("strategy 'popularity' needs item popularity counts")
        p = np.asarray(popularity, dtype=np.float64) + 1e-12
        p = p / p.sum()
    elif strategy != "uniform":
        raise ValueError(f"unknown negative sampling strategy {strategy!r} (uniform | popularity)")
    M = len(eval_set)
    out = np.empty((M, 1 + n_neg), dtype=np.int64)
    out[:, 0] = eval_set.targets
    for r in range(M):
        banned = set(eval_set.histories[r].tolist())
        banned.add(int(eval_set.targets[r]))
        if exclude is not None:
            banned.update(exclude[r].tolist())
        if n_items - len(banned) < n_neg:
            raise ValueError(f"row {r}: only {n_items - len(banned)} items are left to sample {n_neg} negatives from")
        chosen: list[int] = []
        seen = set()
        while len(chosen) < n_neg:
            draw = rng.choice(n_items, size=2 * (n_neg - len(chosen)) + 8, p=p)
            for x in draw.tolist():
                if x not in banned and x not in seen:
                    seen.add(x)
                    chosen.append(x)
                    if len(chosen) == n_neg:
                        break
        out[r, 1:] = chosen
    return out
