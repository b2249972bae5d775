"""Run a set of configs x seeds, one run directory each, skipping runs that already finished.

    python benchmarks/suite.py --out runs/sessions/ml-100k --seeds 1,2,3 configs/sessions/ml-100k/*.yaml
    python benchmarks/suite.py --out runs/beauty configs/beauty/{bpr,ncf}.yaml --set train.max_minutes=12

Each run goes to ``OUT/<config stem>/seed<N>`` (``OUT/<config stem>`` with a single seed and --flat). A run
with a metrics.json is skipped; one with checkpoints but no metrics.json is resumed. Every run is done in this
one process (torch is imported once), and a line per run is appended to ``OUT/suite.jsonl`` with its wall
seconds and test metrics. ``llmrec report OUT`` then gathers the table (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", default="1", help="comma-separated, e.g. 1,2,3")
    ap.add_argument("--set", dest="set_", action="append", default=[], help="override, as for llmrec run")
    ap.add_argument("--flat", action="store_true", help="OUT/<stem> instead of OUT/<stem>/seed<N>")
    a = ap.parse_args(argv)

    from llmrec.config import load_config
    from llmrec.pipelines.run import run

    jobs = []
    for path in a.configs:
        for seed in [int(s) for s in a.seeds.split(",")]:
            d = a.out / path.stem if a.flat else a.out / path.stem / f"seed{seed}"
            jobs.append((path, seed, d, load_config(path, [*a.set_, f"seed={seed}"])))  # validate all first
    a.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for i, (path, seed, d, cfg) in enumerate(jobs, 1):
        if (d / "metrics.json").exists():
            print(f"[{i}/{len(jobs)}] {d}: done, skipped", flush=True)
            continue
        resume = (d / "checkpoints").exists()
        print(f"[{i}/{len(jobs)}] {path} seed={seed} -> {d}{' (resume)' if resume else ''}", flush=True)
        t0 = time.perf_counter()
        rec = {"config": str(path), "seed": seed, "out": str(d), "overrides": a.set_}
        try:
            m = run(cfg, d, resume=resume)
            rec.update(ok=True, test=m["metrics"].get("test"))
        except Exception as e:  # keep going: one failed run must not stop the suite
            failed += 1
            traceback.print_exc()
            rec.update(ok=False, error=f"{type(e).__name__}: {e}")
        rec["wall_seconds"] = round(time.perf_counter() - t0, 1)
        with open(a.out / "suite.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
