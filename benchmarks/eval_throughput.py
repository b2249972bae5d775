"""Full-ranking evaluation throughput on Amazon Beauty: each model's test pass beside plain numpy, in one run.

For every model (Pop, ItemKNN, SASRec, BERT4Rec, HLLM) three passes over the same test users in the evaluator's
batches (``--batch-size``, the evaluator's default 512):

- ``eval``: ``llmrec.evaluation.evaluator.evaluate`` (score -> history mask -> pessimistic rank -> metrics);
- ``score``: ``model.score`` alone on the same batches (the model's own scoring cost);
- beside them the **floor**, plain numpy on the same batches: ``rank`` = history masking + pessimistic rank of
  the target on a ready (B, n_items) float32 score matrix, ``dot64`` = a 64-dim dot-product model's scores plus
  ``rank`` (the issue's "plain numpy scoring, masking and ranking a Beauty-sized 64-dim model").

``overhead = eval - score`` is what the evaluator adds to the model; the target is ``eval <= 1.5 x (rank floor +
score)``. Passes alternate within each repeat (floor, then per model score and eval, then floor again) so the
machine's load hits them all; the minimum over repeats is reported. SASRec is the trained run in
``--sasrec-dir`` when it exists; BERT4Rec and HLLM are built untrained from their Beauty configs (the scoring cost
does not depend on the weights; HLLM's item tower is a 384-dim tiny-bert instead of MiniLM, which only changes
how the item table is computed, not how it is scored). One thread (torch and BLAS).

    .venv/bin/python benchmarks/eval_throughput.py --repeats 2
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def batches(es, bs):
    from llmrec.models.base import HistoryBatch

    for s in range(0, len(es), bs):
        idx = np.arange(s, min(s + bs, len(es)))
        yield idx, HistoryBatch(es.users[idx], [es.histories[i] for i in idx])


def numpy_rank(S: np.ndarray, hist: list[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """Mask each row's history (never its target) and count the items scoring >= the target (pessimistic)."""
    B = len(S)
    r = np.arange(B)
    ts = S[r, targets].copy()
    lens = np.fromiter((len(h) for h in hist), dtype=np.int64, count=B)
    if lens.sum():
        S[np.repeat(r, lens), np.concatenate(hist)] = -np.inf
    S[r, targets] = ts
    return np.count_nonzero(S >= ts[:, None], axis=1)


def floor_pass(es, n_items, bs, S_template, U, V):
    """(rank seconds, dot64 seconds): numpy on the evaluator's batches."""
    t_rank = t_dot = 0.0
    for idx, b in batches(es, bs):
        tg = es.targets[idx].astype(np.int64)
        S = S_template[: len(idx)].copy()  # a ready score matrix (copy not timed)
        t = time.perf_counter()
        numpy_rank(S, b.histories, tg)
        t_rank += time.perf_counter() - t
        t = time.perf_counter()
        S2 = U[idx] @ V.T
        numpy_rank(S2, b.histories, tg)
        t_dot += time.perf_counter() - t
    return t_rank, t_dot


def score_pass(model, es, bs):
    t = time.perf_counter()
    for _, b in batches(es, bs):
        model.score(b)
    return time.perf_counter() - t


def build_models(names, sasrec_dir):
    from llmrec.config import load_config
    from llmrec.data.dataset import load_dataset
    from llmrec.models import build_model
    from llmrec.models.base import Recommender
    from llmrec.pipelines.run import make_split

    cfg = load_config(str(ROOT / "configs/beauty/pop.yaml"))
    ds = load_dataset(cfg.data)
    split = make_split(ds, cfg)
    out, notes = {}, {}
    for n in names:
        t = time.perf_counter()
        if n == "sasrec" and sasrec_dir and Path(sasrec_dir, "config.json").exists():
            from llmrec.data.fingerprint import check_same_data, data_fingerprint

            m = Recommender.load(sasrec_dir)
            check_same_data(m.data_fingerprint, data_fingerprint(ds, cfg.data, split.protocol), sasrec_dir)
            notes[n] = f"trained: {sasrec_dir}"
        elif n in ("pop", "itemknn"):
            c = load_config(str(ROOT / f"configs/beauty/{n}.yaml"))
            m = build_model(n, c.params).fit(split)
            notes[n] = "fitted from configs/beauty"
        else:
            sets = ["train.epochs=0"]
            if n == "hllm":
                sets += ["params.item_backbone=tiny-bert", "params.item_init=scratch",
                         "params.item_overrides={hidden_size: 384, num_hidden_layers: 1, num_attention_heads: 4, intermediate_size: 384}"]
            c = load_config(str(ROOT / f"configs/beauty/{n}.yaml"), sets)
            m = build_model(n, c.params)
            m.fit(split, cfg=c, progress=False)
            notes[n] = f"untrained (epochs=0) from configs/beauty/{n}.yaml" + (" with a 384-dim tiny-bert item tower" if n == "hllm" else "")
        notes[n] += f"; built in {time.perf_counter() - t:.1f}s"
        out[n] = m
    return split, out, notes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="pop,itemknn,sasrec,bert4rec,hllm")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--users", type=int, default=None, help="first N test users only (default: all)")
    ap.add_argument("--sasrec-dir", default="/work/main/runs/retrievers/beauty-sasrec/model")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/eval_throughput.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    from llmrec.evaluation.evaluator import evaluate

    names = a.models.split(",")
    split, models, notes = build_models(names, a.sasrec_dir)
    es = split.test if a.users is None else split.test.subset(np.arange(min(a.users, len(split.test))))
    n_items, n_users, bs = split.n_items, len(es), a.batch_size
    rng = np.random.default_rng(0)
    S_template = rng.standard_normal((bs, n_items)).astype(np.float32)
    U = rng.standard_normal((split.n_users, 64)).astype(np.float32)
    V = rng.standard_normal((n_items, 64)).astype(np.float32)
    U = U[es.users] if len(U) > es.users.max() else rng.standard_normal((n_users, 64)).astype(np.float32)
    U = np.ascontiguousarray(U)
    passes = []

    def rec(kind, model, secs):
        passes.append({"kind": kind, "model": model, "seconds": secs, "loadavg": os.getloadavg()})
        print(f"{kind:6s} {model or '':9s} {secs:7.3f}s  load {os.getloadavg()[0]:.2f}", flush=True)

    for r in range(a.repeats):
        fr, fd = floor_pass(es, n_items, bs, S_template, U, V)
        rec("rank", None, fr), rec("dot64", None, fd)
        for n in (names if r % 2 == 0 else names[::-1]):
            m = models[n]
            rec("score", n, score_pass(m, es, bs))
            res = evaluate(m, es, batch_size=bs, progress=False)
            rec("eval", n, res["seconds"])
        fr, fd = floor_pass(es, n_items, bs, S_template, U, V)
        rec("rank", None, fr), rec("dot64", None, fd)

    best = lambda kind, model=None: min(p["seconds"] for p in passes if p["kind"] == kind and p["model"] == model)  # noqa: E731
    ui = n_users * n_items
    floor_rank, floor_dot = best("rank"), best("dot64")
    rows = {}
    for n in names:
        ev, sc = best("eval", n), best("score", n)
        rows[n] = {"eval_s": round(ev, 3), "score_s": round(sc, 3), "overhead_s": round(ev - sc, 3),
                   "user_items_per_s": round(ui / ev), "overhead_vs_rank_floor": round((ev - sc) / floor_rank, 2),
                   "eval_vs_floor_plus_score": round(ev / (floor_rank + sc), 2),
                   "within_1_5x": bool(ev <= 1.5 * (floor_rank + sc)), "model": notes[n]}
    out = {"benchmark": "eval_throughput", "dataset": "beauty", "split": "loo test, full ranking, history masked",
           "users": n_users, "items": n_items, "user_items": ui, "batch_size": bs,
           "floor": {"rank_s": round(floor_rank, 3), "dot64_s": round(floor_dot, 3),
                     "rank_user_items_per_s": round(ui / floor_rank), "dot64_user_items_per_s": round(ui / floor_dot)},
           "models": rows, "passes": passes, "repeats": a.repeats,
           "threads": {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                       "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")},
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "numpy": np.__version__, "python": platform.python_version()},
           "note": "shared machine: two long single-thread jobs run beside it; loadavg per pass; min over repeats",
           "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({"floor": out["floor"], "models": {k: {kk: vv for kk, vv in v.items() if kk != "model"} for k, v in rows.items()}}, indent=1))


if __name__ == "__main__":
    main()
