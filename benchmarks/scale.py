"""Scale: synthetic data with 100K users and 10K, 100K and 1M items (power-law popularity).

Per size, in its own process (one thread): generate the log (Zipf item popularity, exponent ``--alpha``; user
lengths 5 + geometric, mean ``--mean-len``) as parquet; **load** it through llmrec's generic loader
(``data.name=generic``, dedup, id remapping; no cache); **split** (leave-one-out); **one SASRec epoch** (BCE with
one sampled negative per position -- a full softmax over 1M items does not fit; hidden 64, max_len 50, batch
256, AdamW on the whole embedding table) capped at ``--train-steps`` steps and extrapolated to the epoch;
**full-ranking evaluation** of the test users (history masked, pessimistic ties), capped at ``--eval-cells``
users x items and extrapolated. For every phase: seconds and the peak RSS above the phase's starting RSS
(psutil, sampled every 10 ms) and the process's peak RSS. Every item occurs at least once (the generic loader's
catalogue is the items that occur), the rest of the interactions follow the power law. The evaluator bounds a batch to 2**25 scores
(``evaluate(max_elements=...)``), so its memory must stay flat as items grow; ``--unbounded`` also runs one
evaluation with ``max_elements=None`` (512 users x all items per batch) on the largest size for contrast.

At the largest size, approximate retrieval with the trained SASRec embeddings (``llmrec.llm.retrieval``):
exact top-10 (torch, chunked) vs FAISS flat / IVF (``nlist`` 1024, several ``nprobe``) / HNSW: build seconds,
queries/s and recall@10 against exact (dot product, no history filter).

    .venv/bin/python benchmarks/scale.py --items 10000,100000,1000000
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


class Phase:
    """Wall seconds and peak RSS (sampled) of a block; RSS above the start = the phase's own memory."""

    def __init__(self, name: str, out: dict):
        import psutil

        self.name, self.out, self.proc = name, out, psutil.Process()

    def __enter__(self):
        self.start_rss = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()

        def watch():
            while not self._stop.wait(0.01):
                self.peak = max(self.peak, self.proc.memory_info().rss)

        self._t = threading.Thread(target=watch, daemon=True)
        self._t.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        secs = time.perf_counter() - self.t0
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.out[self.name] = {"seconds": round(secs, 3), "start_rss_mb": round(self.start_rss / MB, 1),
                               "peak_rss_mb": round(self.peak / MB, 1),
                               "peak_above_start_mb": round((self.peak - self.start_rss) / MB, 1),
                               "loadavg": os.getloadavg()}
        print(f"  {self.name:12s} {secs:8.2f}s  peak {self.peak / MB:8.1f} MB (+{(self.peak - self.start_rss) / MB:.1f})"
              f"  load {os.getloadavg()[0]:.2f}", flush=True)


def generate(path: Path, n_users: int, n_items: int, alpha: float, mean_len: float, seed: int) -> int:
    import polars as pl

    rng = np.random.default_rng(seed)
    lens = 5 + rng.geometric(1.0 / max(mean_len - 4, 1.0), size=n_users)
    p = 1.0 / np.arange(1, n_items + 1) ** alpha
    cdf = np.cumsum(p / p.sum())
    n = int(lens.sum())
    items = np.minimum(np.searchsorted(cdf, rng.random(n)), n_items - 1)
    if n >= n_items:  # every item in the catalogue occurs at least once (a Zipf tail with a floor of one)
        items[rng.choice(n, size=n_items, replace=False)] = np.arange(n_items)
    items = rng.permutation(n_items)[items]  # popular items are not the low ids
    users = np.repeat(np.arange(n_users), lens)
    ts = np.arange(n) - np.repeat(np.cumsum(lens) - lens, lens)
    pl.DataFrame({"user": users, "item": items, "timestamp": ts}).write_parquet(path)
    return n


def one_size(a, n_items: int, out_json: Path) -> None:
    import torch

    torch.set_num_threads(1)
    from llmrec.config import load_config
    from llmrec.data.dataset import load_dataset
    from llmrec.evaluation.evaluator import evaluate
    from llmrec.models import build_model
    from llmrec.pipelines.run import make_split

    res: dict = {"items": n_items, "users": a.users, "phases": {}}
    ph = res["phases"]
    tmp = Path(tempfile.mkdtemp(prefix=f"scale{n_items}-"))
    print(f"== {a.users} users x {n_items} items", flush=True)
    with Phase("generate", ph):
        res["interactions_generated"] = generate(tmp / "log.parquet", a.users, n_items, a.alpha, a.mean_len, a.seed)
    sets = ["data.name=generic", f"data.generic.interactions={tmp / 'log.parquet'}", "data.use_cache=false",
            "model=sasrec", "params={hidden: 64, max_len: 50, blocks: 2, heads: 1, dropout: 0.2, loss: bce}",
            "train.epochs=1", "train.batch_size=256", "train.lr=0.001", "train.patience=null", "train.checkpoint=false",
            "threads=1", "progress=false"]
    cfg = load_config(None, sets)
    with Phase("load", ph):
        ds = load_dataset(cfg.data)
    res["dataset"] = {"users": ds.n_users, "items": ds.n_items, "interactions": ds.n_interactions}
    with Phase("split", ph):
        split = make_split(ds, cfg)
    del ds

    m = build_model("sasrec", cfg.params)
    steps_total = None

    class Cap(Exception):
        pass

    from llmrec.training import trainer as tr

    orig_shard = tr.Trainer._shard

    def capped(self, batches, acc):  # the epoch's first --train-steps batches only
        nonlocal steps_total
        b = orig_shard(self, batches, acc)
        steps_total = len(b)
        if hasattr(b, "chunks"):
            b.chunks = b.chunks[: a.train_steps]
        return b

    tr.Trainer._shard = capped
    split_valid, split.valid = split.valid, None  # no validation pass inside the epoch
    with Phase("train", ph):
        m.fit(split, cfg=cfg, progress=False)
    tr.Trainer._shard = orig_shard
    split.valid = split_valid
    steps = m.fit_info["history"][0]["steps"]
    secs = m.fit_info["seconds_per_epoch"][0]
    res["train"] = {"steps_run": steps, "steps_per_epoch": steps_total, "seconds_run": secs,
                    "seconds_per_step": secs / steps, "epoch_seconds_extrapolated": round(secs / steps * steps_total, 1),
                    "loss": "bce", "batch_size": 256, "max_len": 50, "hidden": 64,
                    "params": int(sum(p.numel() for p in m.net.parameters()))}

    test = split.test
    n_eval = int(min(len(test), a.eval_users, max(1, a.eval_cells // n_items)))
    sub = test.subset(np.arange(n_eval))
    with Phase("eval", ph):
        r = evaluate(m, sub, progress=False)
    res["eval"] = {"users": n_eval, "test_users": len(test), "seconds": r["seconds"],
                   "user_items_per_s": round(n_eval * n_items / r["seconds"]),
                   "full_test_seconds_extrapolated": round(r["seconds"] * len(test) / n_eval, 1),
                   "rows_per_batch": max(1, min(512, 2**25 // n_items)), "NDCG@10": r["metrics"]["NDCG@10"]}
    if a.unbounded and n_items == max(a.item_sizes):
        k = min(n_eval, 1024)
        with Phase("eval_unbounded", ph):
            r2 = evaluate(m, test.subset(np.arange(k)), progress=False, max_elements=None)
        res["eval_unbounded"] = {"users": k, "seconds": r2["seconds"], "rows_per_batch": 512}
    if a.faiss and n_items == max(a.item_sizes):
        res["retrieval"] = retrieval_bench(m, test, a)
    out_json.write_text(json.dumps(res, indent=1))


def retrieval_bench(m, test, a) -> dict:
    import faiss
    import torch

    from llmrec.llm.retrieval import ExactIndex, FaissIndex
    from llmrec.models.base import HistoryBatch

    faiss.omp_set_num_threads(1)
    items = m.net.item_emb.weight[1:].detach().float().contiguous()
    nq = min(a.queries, len(test))
    b = HistoryBatch(test.users[:nq], test.histories[:nq])
    with torch.no_grad():
        m.net.eval()
        q = torch.cat([m.net(b_.padded(50, shift=1))[:, -1] for b_ in
                       (HistoryBatch(b.users[s:s + 256], b.histories[s:s + 256]) for s in range(0, nq, 256))])
    out = {"queries": nq, "items": int(items.shape[0]), "dim": int(items.shape[1]), "k": 10, "metric": "dot",
           "note": "SASRec embeddings after the capped epoch: the top-10 is dominated by the few popular items trained so far, an easy case for IVF"}
    t = time.perf_counter()
    ex = ExactIndex(items, metric="dot", query_chunk=64)
    out["exact_build_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    _, truth = ex.search(q, 10)
    out["exact"] = {"seconds": round(time.perf_counter() - t, 3)}
    out["exact"]["queries_per_s"] = round(nq / out["exact"]["seconds"], 1)
    truth = truth.numpy()

    def recall(ids):
        ids = ids.numpy()
        return float(np.mean([len(set(ids[i]) & set(truth[i])) / 10 for i in range(nq)]))

    variants = [("flat", {}, [None]), ("ivf", {"nlist": 1024}, [8, 32, 128]), ("hnsw", {"hnsw_m": 16}, [64, 256])]
    for kind, kw, knobs in variants:
        if kind not in a.faiss_kinds:
            continue
        t = time.perf_counter()
        idx = FaissIndex(items, metric="dot", kind=kind, **kw)
        build = round(time.perf_counter() - t, 2)
        print(f"  faiss {kind} built in {build}s", flush=True)
        for knob in knobs:
            if kind == "ivf":
                idx.index.nprobe = knob
            elif kind == "hnsw":
                idx.index.hnsw.efSearch = knob
            t = time.perf_counter()
            _, ids = idx.search(q, 10)
            secs = time.perf_counter() - t
            name = kind if knob is None else f"{kind}-{'nprobe' if kind == 'ivf' else 'ef'}{knob}"
            out[name] = {"build_s": build, "seconds": round(secs, 3), "queries_per_s": round(nq / secs, 1),
                         "recall@10": round(recall(ids), 4)}
            print(f"  {name}: {out[name]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", default="10000,100000,1000000")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--mean-len", type=float, default=50.0)
    ap.add_argument("--eval-users", type=int, default=20_000, help="evaluated test users per size (cap)")
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--eval-cells", type=float, default=1e9, help="users x items evaluated per size (cap)")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--faiss", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--faiss-kinds", default="flat,ivf", help="also hnsw: its 1M-item build ran > 5 min on one loaded thread")
    ap.add_argument("--unbounded", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--part", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/scale.json"))
    a = ap.parse_args()
    a.item_sizes = [int(float(x)) for x in a.items.split(",")]
    a.faiss_kinds = a.faiss_kinds.split(",")
    if a.one is not None:
        one_size(a, a.one, Path(a.part))
        return
    sizes = []
    for n in a.item_sizes:  # each size in a fresh process: its peak RSS is its own
        part = Path(tempfile.mkstemp(suffix=".json")[1])
        argv = [x for i, x in enumerate(sys.argv[1:]) if not x.startswith("--out") and sys.argv[i] != "--out"]
        cmd = [sys.executable, __file__, "--one", str(n), "--part", str(part), *argv]
        subprocess.run(cmd, check=True)
        sizes.append(json.loads(part.read_text()))
    import torch

    res = {"benchmark": "scale", "argv": sys.argv[1:], "sizes": sizes,
           "threads": {"torch": 1, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "faiss": 1},
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "python": platform.python_version()},
           "note": "shared machine: two long single-thread jobs run beside it; loadavg per phase",
           "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    Path(a.out).write_text(json.dumps(res, indent=1))
    for s in sizes:
        print(s["items"], {k: (v["seconds"], v["peak_above_start_mb"]) for k, v in s["phases"].items()})


if __name__ == "__main__":
    main()
