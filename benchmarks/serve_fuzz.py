"""Property-based run of ``llmrec serve``'s OpenAPI schema with schemathesis, against the live service on a free
127.0.0.1 port: every check (server errors, status codes and response bodies conforming to the schema,
schema-valid data accepted, schema-invalid data rejected, ...) on generated positive and negative requests.
Bounded by ``--max-examples`` per operation and ``--max-seconds``; the service is stopped at the end.

    .venv/bin/python benchmarks/serve_fuzz.py runs/serve/beauty-sasrec --out benchmarks/results/serve-fuzz.json

Writes the case counts from schemathesis' JSON report and, independently, the service's own count of 5xx
answers (from its /metrics) — both should be 0 server errors.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import free_port, start_server, stop_server


def status_counts(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in re.finditer(r'^llmrec_requests_total\{[^}]*status="(\d+)"\} ([0-9.e+]+)$',
                         httpx.get(f"{url}/metrics", timeout=10).text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--out", default="benchmarks/results/serve-fuzz.json")
    ap.add_argument("--max-examples", type=int, default=300, help="per API operation")
    ap.add_argument("--max-seconds", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = out.with_name(out.stem + "-schemathesis.json")
    started: list = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        p = start_server(a.run_dir, True, a.threads, port, [], started)
        before = status_counts(url)
        cmd = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/openapi.json", "--checks", "all",
               "--mode", "all", "-n", str(a.max_examples), "--seed", str(a.seed), "--workers", "1", "--no-color",
               "--max-time", str(a.max_seconds), "--report", "json", "--report-json-path", str(report),
               "--generation-database", "none"]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=a.max_seconds + 120)
        secs = time.time() - t0
        after = status_counts(url)
    finally:
        for p in started:
            stop_server(p)
    log_path = out.with_name(out.stem + "-schemathesis.txt")
    log_path.write_text(r.stdout[-200_000:])  # the failures with their reproducing requests
    st = json.loads(report.read_text())
    diff = {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(set(after) | set(before))}
    diff["200"] = diff.get("200", 0) - 1  # our own /metrics read between the two counts
    res = {
        "benchmark": "serve_fuzz",
        "run_dir": a.run_dir,
        "tool": f"schemathesis {st.get('schemathesis_version')}",
        "command": " ".join(cmd[1:]),
        "seed": a.seed,
        "max_examples_per_operation": a.max_examples,
        "seconds": round(secs, 1),
        "exit_code": r.returncode,
        "operations": st.get("operations"),
        "test_cases": st.get("test_cases"),
        "failures": (st.get("failures") or [])[:20],
        "errors": (st.get("errors") or [])[:20],
        "server_responses_by_status": diff,
        "server_errors_5xx": int(sum(v for k, v in diff.items() if k.startswith("5"))),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(r.stdout[-3000:])
    print(json.dumps({k: res[k] for k in ("test_cases", "server_errors_5xx", "server_responses_by_status")}, indent=2))
    print(f"wrote {out} (schemathesis report: {report}, output: {log_path})")


if __name__ == "__main__":
    main()
