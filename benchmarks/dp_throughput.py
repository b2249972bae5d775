"""Data-parallel training throughput: samples/s of 1 and N CPU processes (torchrun, gloo), alternated in one run.

Each measurement is a fresh ``llmrec run CONFIG`` (1 process: the plain loop; N: ``python -m torch.distributed.run
--standalone --nproc_per_node N -m llmrec run``), ``--epochs`` epochs, each process on ``--threads`` threads, with the
same global batch (``train.batch_size``). Samples/s = training sequences per epoch / training seconds of the epoch
(validation, loading and process start-up excluded); positions/s counts the next-item targets. The last epoch is
reported (the first pays one-off warm-up). Records ``os.getloadavg()`` before and after every measurement.

    .venv/bin/python benchmarks/dp_throughput.py configs/ml-100k/sasrec.yaml --procs 1,2 --repeats 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def count_samples(config: str, sets: list[str]) -> tuple[int, int]:
    from llmrec.pipelines.run import load_split

    cfg, _, split = load_split(config, sets)
    L = cfg.params["max_len"] if isinstance(cfg.params, dict) else cfg.params.max_len
    lens = [len(s) for s in split.train if len(s) >= 2]
    return len(lens), int(sum(min(n, L + 1) - 1 for n in lens))


def one(config: str, procs: int, sets: list[str], threads: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"dp{procs}-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "LLMREC_PROGRESS": "0"}
    launch = [sys.executable, "-m", "llmrec"] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), "-m", "llmrec"]
    cmd = [*launch, "run", config, "--out", str(out), *[a for s in sets for a in ("--set", s)]]
    load0, t0 = os.getloadavg(), time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    m = json.loads((out / "metrics.json").read_text())
    fi = m["fit_info"]
    return {"procs": procs, "num_processes": fi["num_processes"], "threads_per_process": m["threads"],
            "seconds_per_epoch": fi["seconds_per_epoch"], "loss": [h["loss"] for h in fi["history"]],
            "steps": [h["steps"] for h in fi["history"]], "wall_seconds": round(wall, 2),
            "loadavg_before": load0, "loadavg_after": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/dp_throughput.json"))
    a = ap.parse_args()
    sets = [f"train.epochs={a.epochs}", "train.patience=null", "train.checkpoint=false", "train.max_eval_users=200",
            "eval.sample_users=200", f"threads={a.threads}", "progress=false"]
    samples, positions = count_samples(a.config, sets)
    procs = [int(x) for x in a.procs.split(",")]
    runs = []
    for r in range(a.repeats):
        for n in (procs if r % 2 == 0 else procs[::-1]):  # alternate the order so the machine's load hits all
            x = one(a.config, n, sets, a.threads)
            x["repeat"] = r
            secs = x["seconds_per_epoch"][-1]
            x["samples_per_s"] = round(samples / secs, 1)
            x["positions_per_s"] = round(positions / secs, 1)
            runs.append(x)
            print(json.dumps({k: x[k] for k in ("procs", "repeat", "seconds_per_epoch", "samples_per_s", "loss", "loadavg_after")}))
    summary = {}
    for n in procs:
        rs = [x for x in runs if x["procs"] == n]
        best = min(x["seconds_per_epoch"][-1] for x in rs)
        summary[str(n)] = {"best_epoch_seconds": best, "samples_per_s": round(samples / best, 1),
                           "positions_per_s": round(positions / best, 1)}
    out = {"benchmark": "dp_throughput", "config": a.config, "sets": sets, "samples_per_epoch": samples,
           "positions_per_epoch": positions, "runs": runs, "summary": summary,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "python": platform.python_version()},
           "note": "machine shared with two long single-thread jobs; loadavg recorded per measurement",
           "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
