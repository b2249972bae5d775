"""Load benchmark of ``llmrec serve`` on loopback: requests/s, p50/p99 latency and errors at several concurrency
levels, with and without request batching. Bounded: at most ``--requests`` requests and ``--max-seconds`` per
(mode, concurrency) cell; the service runs as a subprocess on a free 127.0.0.1 port and is stopped at the end.

    .venv/bin/python benchmarks/serve_load.py runs/serve/beauty-sasrec --out benchmarks/results/serve-load.json

Requests: ``POST /recommend`` with k=10, for a known user drawn at random (``--history-share`` of them instead
send a random history of 1..20 catalogue items as a new user). Clients are asyncio tasks, one keep-alive
connection each, sending the next request when the previous answer arrives (closed loop), with a minimal
HTTP/1.1 client (httpx costs more CPU per request than the server). The client shares the CPUs with the
server: the numbers are for this machine as a whole, not for the server alone. ``model_call`` in the result is
the model call alone (no HTTP) at batch sizes 1, 8, 32, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: str, batching: bool, threads: int, port: int, extra: list[str],
                 started: list | None = None) -> subprocess.Popen:
    """Start `llmrec serve` and wait for /health; the process is appended to ``started`` at once (cleanup)."""
    cmd = [sys.executable, "-m", "llmrec", "serve", run_dir, "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(threads), "--batching" if batching else "--no-batching", *extra]
    env = {**os.environ, "LLMREC_PROGRESS": "0"}
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    if started is not None:
        started.append(p)
    t0 = time.time()
    while time.time() - t0 < 180:
        if p.poll() is not None:
            raise RuntimeError(f"server exited: {p.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return p
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(p)
    raise RuntimeError("server did not answer /health within 180 s")


def stop_server(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def batch_stats(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    s = re.search(r"^llmrec_batch_size_sum ([0-9.e+]+)$", text, re.M)
    c = re.search(r"^llmrec_batch_size_count ([0-9.e+]+)$", text, re.M)
    return (float(s.group(1)) if s else 0.0, float(c.group(1)) if c else 0.0)


async def _post(reader, writer, port: int, payload: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive POST /recommend on an open connection (a minimal client: httpx's own per-request
    cost is several times the server's and would be what a loopback benchmark measures)."""
    writer.write(b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (port, len(payload), payload))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    n = next(int(x.split(":", 1)[1]) for x in lines[1:] if x.lower().startswith("content-length:"))
    return status, await reader.readexactly(n)


async def load(url: str, bodies: list[dict], concurrency: int, n_requests: int, max_seconds: float) -> dict:
    lat: list[float] = []
    errors: dict[str, int] = {}
    nxt = 0
    t_end = time.perf_counter() + max_seconds
    port = int(url.rsplit(":", 1)[1])
    payloads = [json.dumps(b).encode() for b in bodies]

    async def worker():
        nonlocal nxt
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while nxt < n_requests and time.perf_counter() < t_end:
                payload = payloads[nxt % len(payloads)]
                nxt += 1
                t = time.perf_counter()
                try:
                    status, body = await asyncio.wait_for(_post(reader, writer, port, payload), 60)
                    ok = status == 200 and len(json.loads(body)["items"]) > 0
                    key = None if ok else f"http {status}"
                except Exception as e:
                    key = type(e).__name__
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                lat.append(time.perf_counter() - t)
                if key:
                    errors[key] = errors.get(key, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    secs = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "seconds": round(secs, 2),
        "requests_per_s": round(len(lat) / secs, 1) if secs else 0.0,
        "p50_ms": round(float(np.percentile(a, 50)), 1) if len(a) else None,
        "p99_ms": round(float(np.percentile(a, 99)), 1) if len(a) else None,
        "mean_ms": round(float(a.mean()), 1) if len(a) else None,
        "errors": int(sum(errors.values())),
        "error_kinds": errors,
        "stopped_by": "requests" if len(lat) >= n_requests else "time",
    }


def model_timing(run_dir: str, threads: int, sizes=(1, 8, 32), calls: int = 40) -> list[dict]:
    """The model call alone (no HTTP), in this process: ms per call and per request at each batch size."""
    import torch

    from llmrec.pipelines.artifact import load_artifact
    from llmrec.service.engine import Query, recommend_resolved, resolve

    torch.set_num_threads(threads)
    art = load_artifact(run_dir)
    users = random.Random(0).sample(art.user_ids, min(len(art.user_ids), max(sizes) * calls))
    rows = [resolve(art, Query(user=u, k=10)) for u in users]
    out = []
    for b in sizes:
        recommend_resolved(art, rows[:b])
        t = time.perf_counter()
        n = 0
        for i in range(0, min(len(rows), b * calls), b):
            recommend_resolved(art, rows[i:i + b])
            n += 1
        dt = (time.perf_counter() - t) / n
        out.append({"batch": b, "ms_per_call": round(dt * 1000, 2), "ms_per_request": round(dt * 1000 / b, 3)})
    return out


def make_bodies(run_dir: str, n: int, history_share: float, seed: int) -> list[dict]:
    import polars as pl

    from llmrec.pipelines.artifact import _model_dir

    md = _model_dir(Path(run_dir))
    users = pl.read_parquet(md / "users.parquet", columns=["user_id"])["user_id"].to_list()
    items = pl.read_parquet(md / "items.parquet", columns=["item_id"])["item_id"].to_list()
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < history_share:
            out.append({"history": rng.sample(items, rng.randint(1, 20)), "k": 10})
        else:
            out.append({"user": rng.choice(users), "k": 10})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--out", default="benchmarks/results/serve-load.json")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--modes", default="batching:0,batching:2,no-batching",
                    help="batching:<max wait ms> | no-batching, comma-separated")
    ap.add_argument("--requests", type=int, default=2000, help="most requests per cell")
    ap.add_argument("--max-seconds", type=float, default=40.0, help="most seconds per cell")
    ap.add_argument("--warmup", type=int, default=20, help="requests before each cell (not counted)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    ap.add_argument("--history-share", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--server-args", default="", help="extra `llmrec serve` options, space-separated")
    a = ap.parse_args()

    bodies = make_bodies(a.run_dir, 2000, a.history_share, a.seed)
    meta = json.loads((Path(a.run_dir) / "model" / "config.json").read_text())
    serving = json.loads((Path(a.run_dir) / "model" / "serving.json").read_text())
    result = {
        "benchmark": "serve_load",
        "run_dir": a.run_dir,
        "model": meta["model"],
        "dataset": serving["dataset"],
        "n_items": serving["n_items"],
        "n_users": serving["n_users"],
        "request": f"POST /recommend k=10; {int(100 * (1 - a.history_share))}% known user, "
                   f"{int(100 * a.history_share)}% new user with a 1..20 item history",
        "limits": {"requests_per_cell": a.requests, "max_seconds_per_cell": a.max_seconds},
        "server_threads": a.threads,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_at_start": list(os.getloadavg())},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cells": [],
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    servers: list[subprocess.Popen] = []  # stopped on any exit: Ctrl-C and SIGTERM included
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        _cells(a, bodies, result, out, servers)
    finally:
        for p in servers:
            stop_server(p)


def _cells(a, bodies: list[dict], result: dict, out: Path, servers: list) -> None:
    result["model_call"] = model_timing(a.run_dir, a.threads)
    print(json.dumps(result["model_call"]), flush=True)
    for mode in a.modes.split(","):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        batching = mode.startswith("batching")
        extra = a.server_args.split() + (["--max-wait-ms", mode.split(":")[1]] if batching and ":" in mode else [])
        p = start_server(a.run_dir, batching, a.threads, port, extra, servers)
        try:
            for c in [int(x) for x in a.concurrency.split(",")]:
                asyncio.run(load(url, bodies[-200:], min(c, 8), a.warmup, 60))
                s0, n0 = batch_stats(url)
                cell = asyncio.run(load(url, bodies, c, a.requests, a.max_seconds))
                s1, n1 = batch_stats(url)
                cell["mode"] = mode
                cell["mean_batch_size"] = round((s1 - s0) / (n1 - n0), 2) if n1 > n0 else None
                cell["loadavg"] = list(os.getloadavg())
                result["cells"].append(cell)
                print(json.dumps(cell), flush=True)
                tmp = out.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(result, indent=2) + "\n")
                tmp.replace(out)  # partial results survive an interruption
        finally:
            stop_server(p)
    result["finished"] = True
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
