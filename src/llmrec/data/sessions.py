"""The session-based protocol of HRNN (Quadrana et al. 2017) and HNVM (Xiao et al. 2019).

:func:`session_split` turns a timestamped :class:`~llmrec.data.dataset.Dataset` into a :class:`Split`:

1. **Sessions by idle gap** (:func:`llmrec.data.splits.sessionize`): a new session starts when the gap to the
   user's previous interaction is *strictly greater* than ``split.session_gap`` seconds (default 1800); equal
   timestamps and a gap of exactly ``session_gap`` stay in the same session.
2. **Filters**, one pass in HRNN's order (each optional): repeated items inside a session
   (``session_dedup``), items with fewer than ``session_min_item_count`` interactions, sessions shorter than
   ``session_min_length``, users with fewer than ``session_min_user_sessions`` or more than
   ``session_max_user_sessions`` sessions. The counts after every step are in ``split.info["counts"]``.
3. **Last-session-out**: a user's last session is the test session, the one before it the validation
   session, the rest is training. Users with fewer than 3 sessions are training-only.
4. **Catalogue = training items.** Items of validation/test sessions that never occur in the training
   sessions are removed from them (counted), and held-out sessions left shorter than
   ``session_min_eval_length`` (default 2) are not evaluated. Users and items are then renumbered densely
   (keeping the relative order of the input indices, so a random id order stays random): ``split.dataset``
   is the filtered dataset, and every model ranks all catalogue items.
5. **Tasks** (``split.session_task``):

   - ``next-item``: predict an item of the held-out session from the earlier sessions plus the items before
     it in that session. ``session_targets: last`` evaluates only the session's last item (HNVM §4.2 as
     written); ``all`` evaluates every position (HRNN's protocol, and what HNVM's Table 1 and Fig. 2 imply),
     from the second one on unless ``session_include_first``. ``split.protocol`` is
     ``session-next-item-last`` / ``session-next-item-all``.
   - ``next-session``: predict the whole held-out session (``EvalSet.target_sets``, its distinct items) from
     the earlier sessions; ``split.protocol`` is ``session-next-session``.
   - ``both``: one fit, trained and validated (early stopping) as ``next-item``, tested on next-item and on
     next-session (``split.extra_tests``); the pipeline writes the second result to
     ``RUN/session-next-session/metrics.json`` with ``selected_on`` saying how the model was chosen.

The validation rows are built the same way from the validation session (their history: the training
sessions); the test rows' history includes the validation session, as in leave-one-out.

What models get: ``split.train[u]`` is user ``u``'s training sessions concatenated (so non-session models run
unchanged) and ``split.train_sessions[u]`` the list of those sessions. Every ``EvalSet`` row has its flattened
``histories[r]`` and ``sessions[r]``: the same items cut into sessions, the last entry being the prefix of
the current session (empty when a session's first item, or a whole next session, is predicted).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from llmrec.data.dataset import Dataset
from llmrec.data.splits import EvalSet, Split, sessionize
from llmrec.utils.padding import pad_rows

_EMPTY = np.zeros(0, dtype=np.int64)


def _counts(uid: np.ndarray, sid: np.ndarray, items: np.ndarray) -> dict:
    return {
        "interactions": int(len(items)),
        "sessions": int(len(np.unique(sid))),
        "users": int(len(np.unique(uid))),
        "items": int(len(np.unique(items))),
    }


def session_protocol_name(task: str, targets: str) -> str:
    return "session-next-session" if task == "next-session" else f"session-next-item-{targets}"


def filter_sessions(ds: Dataset, sc) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Sessionize and filter. Returns per-interaction ``(user, session id, item, order)`` arrays (kept rows,
    chronological per user) and the counts after every step."""
    sid = sessionize(ds, sc.session_gap)
    uid = np.repeat(np.arange(ds.n_users, dtype=np.int64), ds.lengths())
    items, order = ds.seq_items.astype(np.int64), ds.seq_order.astype(np.int64)
    counts = {"sessionized": _counts(uid, sid, items)}

    def keep(mask):
        nonlocal uid, sid, items, order
        uid, sid, items, order = uid[mask], sid[mask], items[mask], order[mask]

    if sc.session_dedup and len(items):
        # first occurrence of each (session, item)
        key = sid * (int(items.max()) + 1) + items
        _, first = np.unique(key, return_index=True)
        m = np.zeros(len(items), dtype=bool)
        m[first] = True
        keep(m)
        counts["after_dedup"] = _counts(uid, sid, items)
    if sc.session_min_item_count > 1 and len(items):
        cnt = np.bincount(items, minlength=ds.n_items)
        keep(cnt[items] >= sc.session_min_item_count)
        counts["after_min_item_count"] = _counts(uid, sid, items)
    if sc.session_min_length > 1 and len(items):
        _, inv, cnt = np.unique(sid, return_inverse=True, return_counts=True)
        keep(cnt[inv] >= sc.session_min_length)
        counts["after_min_session_length"] = _counts(uid, sid, items)
    if (sc.session_min_user_sessions > 1 or sc.session_max_user_sessions is not None) and len(items):
        first_of_session = np.ones(len(sid), dtype=bool)
        first_of_session[1:] = sid[1:] != sid[:-1]
        n_sess = np.bincount(uid[first_of_session], minlength=ds.n_users)
        ok = n_sess >= sc.session_min_user_sessions
        if sc.session_max_user_sessions is not None:
            ok &= n_sess <= sc.session_max_user_sessions
        keep(ok[uid])
        counts["after_user_sessions"] = _counts(uid, sid, items)
    if len(items) == 0:
        raise ValueError("the session filters removed every interaction")
    return uid, sid, items, order, counts


def _user_sessions(uid, sid, items, order):
    """{user: [(items, orders), ...]} in chronological order."""
    out: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    if not len(items):
        return out
    cut = np.flatnonzero(sid[1:] != sid[:-1]) + 1
    for a, b in zip(np.r_[0, cut], np.r_[cut, len(items)]):
        out.setdefault(int(uid[a]), []).append((items[a:b], order[a:b]))
    return out


def _subset_dataset(ds: Dataset, users_old: np.ndarray, items_old: np.ndarray, per_user: list[tuple[np.ndarray, np.ndarray]]) -> Dataset:
    """A new Dataset over the kept users/items (renumbered densely in the order of their old indices)."""
    lens = np.array([len(it) for it, _ in per_user], dtype=np.int64)
    ptr = np.zeros(len(per_user) + 1, dtype=np.int64)
    np.cumsum(lens, out=ptr[1:])
    seq_items = np.concatenate([it for it, _ in per_user]) if per_user else _EMPTY
    seq_order = np.concatenate([o for _, o in per_user]) if per_user else _EMPTY
    text = ds.item_text
    if "item" in text.columns:
        m = pl.DataFrame({"item": items_old.astype(np.int64), "_new": np.arange(len(items_old), dtype=np.int64)})
        text = (
            text.with_columns(pl.col("item").cast(pl.Int64)).join(m, on="item", how="inner")
            .drop("item").rename({"_new": "item"})
        )
        text = text.select(["item"] + [c for c in text.columns if c != "item"]).sort("item")
    return Dataset(
        name=ds.name,
        n_users=len(users_old),
        n_items=len(items_old),
        user_ptr=ptr,
        seq_items=seq_items.astype(np.int64),
        seq_order=seq_order.astype(np.int64),
        seq_behavior=None,
        user_ids=[ds.user_ids[u] for u in users_old],
        item_ids=[ds.item_ids[i] for i in items_old],
        item_text=text,
        has_timestamps=ds.has_timestamps,
        notes=list(ds.notes) + ["session protocol: users and items renumbered after the session filters"],
        info={**ds.info, "session_subset": True},
    )


def _rows_for_session(u: int, earlier: list[np.ndarray], sess: np.ndarray, task: str, targets: str, include_first: bool):
    """EvalSet rows (user, history, sessions, target or target set) for one held-out session."""
    base = np.concatenate(earlier) if earlier else _EMPTY
    if task == "next-session":
        return [(u, base, earlier + [_EMPTY], np.unique(sess))]
    # one flat array per row would copy O(L^2); histories are views into one array per session
    flat = np.concatenate([base, sess])
    nb = len(base)
    if targets == "last":
        positions = [len(sess) - 1]
    else:
        positions = list(range(0 if include_first else 1, len(sess)))
    return [(u, flat[: nb + t], earlier + [sess[:t]], int(sess[t])) for t in positions]


def _eval_set(rows, task: str, name: str) -> EvalSet:
    users = np.array([r[0] for r in rows], dtype=np.int64)
    hist = [r[1] for r in rows]
    sess = [r[2] for r in rows]
    if task == "next-session":
        return EvalSet(users=users, histories=hist, target_sets=[r[3] for r in rows], name=name, sessions=sess)
    tg = np.array([r[3] for r in rows], dtype=np.int64)
    return EvalSet(users=users, histories=hist, targets=tg, name=name, sessions=sess)


def session_split(ds: Dataset, cfg) -> Split:
    """Sessionize, filter, last-session-out split; see the module docstring. ``cfg`` is a RunConfig (or anything
    with a ``split`` attribute holding a :class:`llmrec.config.SessionSplit`), or the SessionSplit itself. It ranks
    all training items: the session section has no sampled candidates."""
    sc = getattr(cfg, "split", cfg)
    task, targets = sc.session_task, sc.session_targets
    both = task == "both"
    if both:  # train and validate as next-item; also build the next-session test set from the same sessions
        task = "next-item"
    uid, sid, items, order, counts = filter_sessions(ds, sc)
    by_user = _user_sessions(uid, sid, items, order)

    users_old = np.array(sorted(by_user), dtype=np.int64)
    train_items_mask = np.zeros(ds.n_items, dtype=bool)
    roles: dict[int, tuple[list, object, object]] = {}
    for u in users_old.tolist():
        ss = by_user[u]
        if len(ss) >= 3:
            roles[u] = (ss[:-2], ss[-2], ss[-1])
        else:
            roles[u] = (ss, None, None)
        for it, _ in roles[u][0]:
            train_items_mask[it] = True
    items_old = np.flatnonzero(train_items_mask)
    imap = np.full(ds.n_items, -1, dtype=np.int64)
    imap[items_old] = np.arange(len(items_old))

    info: dict = {
        "session_gap": sc.session_gap,
        "task": task,
        "targets": targets if task == "next-item" else "session",
        "include_first": bool(sc.session_include_first) if task == "next-item" and targets == "all" else None,
        "filters": {
            "dedup": sc.session_dedup, "min_item_count": sc.session_min_item_count,
            "min_session_length": sc.session_min_length, "min_user_sessions": sc.session_min_user_sessions,
            "max_user_sessions": sc.session_max_user_sessions, "min_eval_length": sc.session_min_eval_length,
        },
        "counts": counts,
    }
    held = {"valid": [0, 0, 0, 0], "test": [0, 0, 0, 0]}  # sessions before, interactions before, removed, sessions kept

    def clean(s):
        it, o = s
        m = train_items_mask[it]
        return imap[it[m]], o[m], int((~m).sum())

    per_user_data: list[tuple[np.ndarray, np.ndarray]] = []
    train: list[np.ndarray] = []
    train_sessions: list[list[np.ndarray]] = []
    valid_rows: list = []
    test_rows: list = []
    next_session_rows: list = []
    n_train_only = 0
    for new_u, u in enumerate(users_old.tolist()):
        tr, va, te = roles[u]
        tr_s = [imap[it] for it, _ in tr]
        train_sessions.append(tr_s)
        train.append(np.concatenate(tr_s) if tr_s else _EMPTY)
        parts = [(s, o) for s, (_, o) in zip(tr_s, tr)]
        if va is None:
            n_train_only += 1
            per_user_data.append((train[-1], np.concatenate([o for _, o in parts])))
            continue
        earlier = list(tr_s)
        for which, s in (("valid", va), ("test", te)):
            it, o, removed = clean(s)
            h = held[which]
            h[0] += 1
            h[1] += len(s[0])
            h[2] += removed
            if len(it) >= sc.session_min_eval_length:
                h[3] += 1
                rows = _rows_for_session(new_u, list(earlier), it, task, targets, sc.session_include_first)
                (valid_rows if which == "valid" else test_rows).extend(rows)
                if both and which == "test":
                    next_session_rows.extend(_rows_for_session(new_u, list(earlier), it, "next-session", targets, False))
            if len(it):
                earlier.append(it)  # the test history includes the (cleaned) validation session
                parts.append((it, o))
        per_user_data.append((np.concatenate([p for p, _ in parts]), np.concatenate([o for _, o in parts])))

    new_ds = _subset_dataset(ds, users_old, items_old, per_user_data)
    for which in ("valid", "test"):
        b, ib, rem, kept = held[which]
        info[f"{which}_sessions_before_cleaning"] = b
        info[f"{which}_interactions_before_cleaning"] = ib
        info[f"{which}_interactions_unseen_removed"] = rem
        info[f"{which}_sessions_evaluated"] = kept
    info.update(
        users=len(users_old),
        users_evaluated=int(held["test"][3]),
        users_train_only=n_train_only,
        catalogue_items=len(items_old),
        train_sessions=int(sum(len(s) for s in train_sessions)),
        mean_train_session_length=float(np.mean([len(x) for s in train_sessions for x in s])) if train_sessions else 0.0,
    )
    split = Split(
        dataset=new_ds,
        protocol=session_protocol_name(task, targets),
        train=train,
        valid=_eval_set(valid_rows, task, "valid"),
        test=_eval_set(test_rows, task, "test"),
        info=info,
        train_sessions=train_sessions,
    )
    if both:
        name = session_protocol_name("next-session", targets)
        split.extra_tests[name] = _eval_set(next_session_rows, "next-session", "test")
        info["also_tested"] = [name]
    return split


# ----------------------------------------------------------------------------------------------------
# batching helpers shared by hierarchical models (numpy only)


def pad_sessions(sessions: list[np.ndarray], shift: int = 0, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(S, Lmax) right-padded int64 matrix of ``sessions`` (+``shift``) and (S,) lengths."""
    return pad_rows(sessions, pad=pad, shift=shift)


def group_users_by_sessions(n_sessions: np.ndarray, order: np.ndarray, max_sessions: int) -> list[np.ndarray]:
    """Cut ``order`` (user indices) into consecutive groups of at most ``max_sessions`` sessions in total
    (a user with more sessions forms a group of its own)."""
    groups, cur, tot = [], [], 0
    for u in order.tolist():
        n = int(n_sessions[u])
        if cur and tot + n > max_sessions:
            groups.append(np.array(cur, dtype=np.int64))
            cur, tot = [], 0
        cur.append(u)
        tot += n
    if cur:
        groups.append(np.array(cur, dtype=np.int64))
    return groups
