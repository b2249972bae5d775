"""Micro-batching: concurrent requests answered by one model call.

Requests are queued; one worker thread takes the first waiting request, then whatever else is queued or
arrives within ``max_wait_ms`` (up to ``max_batch``), and answers them all with one :func:`recommend_resolved`
call. With the default ``max_wait_ms=0`` nothing waits: a batch is what queued up while the previous model call
ran, so a lone request goes straight through and under load B requests cost one forward pass of batch B
instead of B passes of batch 1. benchmarks/serve_load.py measures it (0 ms beat 2 ms and no batching at
concurrency 1, 8 and 32 on SASRec/Beauty: BENCHMARKS.md).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

from llmrec.service.engine import Resolved, recommend_resolved


class Batcher:
    def __init__(self, art, max_batch: int = 32, max_wait_ms: float = 0.0, on_batch=None):
        self.art = art
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch  # callback(batch_size) for metrics
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmrec-batcher", daemon=True)
        self._thread.start()

    def submit(self, row: Resolved) -> Future:
        fut: Future = Future()
        if self._stop.is_set():
            fut.set_exception(RuntimeError("the service is shutting down"))
        else:
            self._q.put((row, fut))
        return fut

    def close(self) -> None:
        self._stop.set()
        self._q.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            first = self._q.get()
            if first is None:
                break
            items = [first]
            deadline = time.perf_counter() + self.max_wait
            while len(items) < self.max_batch:
                left = deadline - time.perf_counter()
                try:
                    nxt = self._q.get(timeout=max(left, 0)) if left > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._stop.set()
                    break
                items.append(nxt)
            if self.on_batch is not None:
                self.on_batch(len(items))
            try:
                recs = recommend_resolved(self.art, [row for row, _ in items])
            except BaseException as e:
                for _, fut in items:
                    fut.set_exception(e)
                continue
            for (_, fut), r in zip(items, recs):
                fut.set_result(r)
        while True:  # fail whatever is still queued
            try:
                it = self._q.get_nowait()
            except queue.Empty:
                return
            if it is not None:
                it[1].set_exception(RuntimeError("the service is shutting down"))
