"""Recommendations from a loaded run artefact: one code path for ``llmrec recommend``, ``export`` and ``serve``.

A :class:`Query` names a known user (original id), a history of original item ids, or both (the history is then
appended to the user's known sequence). :func:`resolve` maps ids to indices — item ids not in the catalogue are
*reported* in ``unknown_items`` and left out of the history the model reads, never dropped silently — and
:func:`recommend_resolved` answers a list of resolved queries with one ``model.recommend`` call per history
setting (the batcher of ``llmrec serve`` sends many concurrent requests through it at once).

Ranking: ``model.recommend(batch, k + len(exclude), mask_history)`` (so models with their own top-k, e.g.
HLLM's nearest-neighbour index, keep it), then the request's extra ``exclude`` items, unknown/-inf scores
(ranked-list models leave unlisted items at -inf) and negative ids are removed and the list is cut to ``k``.
The history is masked by default (``exclude_history``), as in evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from llmrec.models.base import HistoryBatch


class UnknownUser(LookupError):
    def __init__(self, user: str):
        super().__init__(f"user {user!r} is not in this model's training data (field 'user'); "
                         "send the user's item history ('history') instead")
        self.user = user


class UnknownItem(LookupError):
    def __init__(self, item: str):
        super().__init__(f"item {item!r} is not in this model's catalogue")
        self.item = item


class EmptyHistory(LookupError):
    def __init__(self, unknown: list[str]):
        shown = ", ".join(repr(x) for x in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        super().__init__(f"none of the history's item ids is in this model's catalogue (field 'history'; unknown: "
                         f"{shown or 'none given'}): there is nothing to recommend from")
        self.unknown = unknown


@dataclass
class Query:
    user: str | None = None
    history: list[str] | None = None
    k: int = 10
    exclude: list[str] = field(default_factory=list)
    exclude_history: bool = True


@dataclass
class Resolved:
    user: str | None
    user_index: int  # -1: not a known user
    history: np.ndarray  # item indices the model reads
    sessions: list[np.ndarray] | None
    exclude: np.ndarray  # extra item indices never to recommend
    k: int
    exclude_history: bool
    unknown_items: list[str]
    unknown_exclude: list[str]


def _map_items(art, ids: list[str]) -> tuple[np.ndarray, list[str]]:
    idx, unknown = [], []
    for x in ids:
        i = art.item_index.get(str(x))
        if i is None:
            unknown.append(str(x))
        else:
            idx.append(i)
    return np.asarray(idx, dtype=np.int64), unknown


def resolve(art, q: Query) -> Resolved:
    """Ids -> indices. Raises :class:`UnknownUser` for a user id the model has not seen and
    :class:`EmptyHistory` when nothing known is left to recommend from (a new user whose items are all unknown)."""
    if q.user is None and q.history is None:
        raise ValueError("give a user id ('user') or an item history ('history')")
    if q.k < 1:
        raise ValueError(f"k must be >= 1 (got {q.k})")
    u = -1
    base = np.zeros(0, dtype=np.int64)
    sessions = None
    if q.user is not None:
        u = art.user_index.get(str(q.user), -1)
        if u < 0:
            raise UnknownUser(str(q.user))
        base = art.histories[u]
        sessions = art.sessions_of(u)
    extra, unknown = _map_items(art, list(q.history or []))
    hist = np.concatenate([base, extra]) if len(extra) else base
    if not len(hist):
        raise EmptyHistory(unknown)  # a new user none of whose items the model knows: no basis for a ranking
    if art.session_lengths is not None:
        if sessions is None or not sessions:
            sessions = [extra]
        elif len(extra):  # appended items continue the last session
            sessions = [*sessions[:-1], np.concatenate([sessions[-1], extra])]
        if art.meta.get("protocol") == "session-next-session":
            sessions = [*sessions, np.zeros(0, dtype=np.int64)]  # predict the next session
    excl, unknown_excl = _map_items(art, list(q.exclude or []))
    return Resolved(user=q.user, user_index=int(u), history=hist, sessions=sessions, exclude=excl, k=int(q.k),
                    exclude_history=bool(q.exclude_history), unknown_items=unknown, unknown_exclude=unknown_excl)


@torch.no_grad()
def recommend_resolved(art, rows: list[Resolved]) -> list[list[tuple[int, float]]]:
    """Top-k (item index, score) per row; rows sharing ``exclude_history`` go through one model call."""
    out: list[list[tuple[int, float]] | None] = [None] * len(rows)
    for flag in (True, False):
        pick = [r for r, row in enumerate(rows) if row.exclude_history == flag]
        if not pick:
            continue
        sub = [rows[r] for r in pick]
        sess = [row.sessions for row in sub] if art.session_lengths is not None else None
        batch = HistoryBatch(users=np.array([row.user_index for row in sub], dtype=np.int64),
                             histories=[row.history for row in sub], sessions=sess)
        kk = min(art.n_items, max(row.k + len(row.exclude) for row in sub))
        idx, vals = art.model.recommend(batch, k=kk, mask_history=flag)
        idx = np.asarray(idx.cpu() if torch.is_tensor(idx) else idx)
        vals = np.asarray(vals.float().cpu() if torch.is_tensor(vals) else vals, dtype=np.float64)
        for j, (r, row) in enumerate(zip(pick, sub)):
            banned = set(row.exclude.tolist())
            if flag:
                banned.update(row.history.tolist())  # also for models whose recommend ignores the flag
            got: list[tuple[int, float]] = []
            for i, s in zip(idx[j].tolist(), vals[j].tolist()):
                if i < 0 or i >= art.n_items or i in banned or not np.isfinite(s):
                    continue
                got.append((int(i), float(s)))
                if len(got) == row.k:
                    break
            out[r] = got
    return out  # type: ignore[return-value]


def as_items(art, recs: list[tuple[int, float]]) -> list[dict]:
    """Rows of rank, original item id, title, score (and the internal index)."""
    return [{"rank": n + 1, "item_id": art.item_ids[i], "title": art.titles[i], "score": s, "index": i}
            for n, (i, s) in enumerate(recs)]


def answer(art, row: Resolved, recs: list[tuple[int, float]]) -> dict:
    """The JSON answer shared by ``llmrec recommend --json`` and ``POST /recommend``."""
    return {
        "user": row.user,
        "known_user": row.user_index >= 0,
        "history_length": len(row.history),
        "k": row.k,
        "exclude_history": row.exclude_history,
        "unknown_items": row.unknown_items,
        "unknown_exclude": row.unknown_exclude,
        "items": as_items(art, recs),
    }


def recommend(art, q: Query) -> dict:
    row = resolve(art, q)
    return answer(art, row, recommend_resolved(art, [row])[0])


def export_all(art, path, k: int = 100, batch_size: int = 256, exclude_history: bool = True,
               progress: bool = True) -> dict:
    """Top-``k`` for every known user into a parquet file (long format: user_id, rank, item_id, score), one
    batch of users at a time (memory bounded by ``batch_size`` x n_items scores), written atomically."""
    import os
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmrec.utils.progress import progress_iter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    schema = pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()), ("score", pa.float32())])
    n_rows = 0
    starts = range(0, art.n_users, batch_size)
    writer = pq.ParquetWriter(tmp, schema)
    try:
        for s in progress_iter(starts, total=len(starts), desc="export", enabled=progress):
            users = range(s, min(s + batch_size, art.n_users))
            rows = [resolve(art, Query(user=art.user_ids[u], k=k, exclude_history=exclude_history)) for u in users]
            recs = recommend_resolved(art, rows)
            uid, rank, iid, score = [], [], [], []
            for u, rr in zip(users, recs):
                for n, (i, sc) in enumerate(rr):
                    uid.append(art.user_ids[u])
                    rank.append(n + 1)
                    iid.append(art.item_ids[i])
                    score.append(sc)
            writer.write_table(pa.table({"user_id": uid, "rank": pa.array(rank, pa.int32()), "item_id": iid,
                                         "score": pa.array(score, pa.float32())}, schema=schema))
            n_rows += len(uid)
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return {"users": art.n_users, "rows": n_rows, "k": k, "path": str(path)}
