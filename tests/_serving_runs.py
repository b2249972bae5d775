"""Tiny trained runs for the serving tests: a generated interaction log (CSV + item titles) run through
``llmrec.pipelines.run.run`` exactly as ``llmrec run`` does, so the serving files come from the real pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_generic_data(d: Path, n_users: int = 40, n_items: int = 30, seed: int = 0) -> dict:
    """u<N> users with 5..12 distinct items each (ids i<N>, some users repeat a 'favourite' pattern)."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    lines = ["user_id,item_id,ts"]
    for u in range(n_users):
        L = int(rng.integers(5, 13))
        start = int(rng.integers(0, n_items))
        seq = [(start + j) % n_items if rng.random() < 0.7 else int(rng.integers(0, n_items)) for j in range(L)]
        seen: list[int] = []
        for x in seq:
            if x not in seen:
                seen.append(x)
        for t, x in enumerate(seen):
            lines.append(f"u{u},i{x},{1000 + 10 * t}")
    (d / "log.csv").write_text("\n".join(lines) + "\n")
    items = ["item_id,title"] + [f"i{x},Title of item {x}" for x in range(n_items)]
    (d / "items.csv").write_text("\n".join(items) + "\n")
    return {"name": "generic", "generic": {"interactions": str(d / "log.csv"), "user_col": "user_id",
                                           "item_col": "item_id", "time_col": "ts", "items": str(d / "items.csv"),
                                           "item_id_col": "item_id", "text_cols": ["title"]}}


def tiny_run(tmp: Path, model: str = "pop") -> Path:
    """Train ``model`` (pop or a tiny sasrec) on the generated data; returns the run directory."""
    from llmrec.config import RunConfig
    from llmrec.pipelines.run import run

    data = write_generic_data(tmp / "data")
    params = {"max_len": 8, "hidden": 16, "blocks": 1, "heads": 1, "dropout": 0.1, "loss": "ce"} if model == "sasrec" else {}
    cfg = RunConfig(data={**data, "cache_dir": str(tmp / "cache")}, model=model, params=params,
                    train={"epochs": 2, "batch_size": 16, "checkpoint": False, "patience": None},
                    eval={"ks": [5]}, threads=1, progress=False, seed=1)
    out = tmp / f"run-{model}"
    run(cfg, out)
    return out


def cached_run(base: Path, model: str) -> Path:
    """One tiny run per pytest session (``base`` = tmp_path_factory.getbasetemp()), shared by the test files."""
    out = base / f"serving-{model}" / f"run-{model}"
    if not (out / "metrics.json").exists():
        tiny_run(base / f"serving-{model}", model)
    return out


class LiveServer:
    """uvicorn serving ``app`` on a free 127.0.0.1 port in a background thread (the socket is bound first, so
    no other process can take the port in between)."""

    def __init__(self, app):
        import socket
        import threading

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        import time

        self.thread.start()
        t0 = time.time()
        while not self.server.started:
            if time.time() - t0 > 30 or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
