"""Add ``by_history_length`` (test metrics by history-length bucket, docs/metrics.md) to runs made before
``llmrec run`` recorded it, by evaluating each saved model once more on the split rebuilt from its config.yaml
(refused when the data differs from what the model was trained on). Usage:

    .venv/bin/python benchmarks/history_breakdown.py RUN_DIR [RUN_DIR ...]

Rewrites RUN_DIR/metrics.json in place (atomically), adding only that key; the test metrics recomputed are
checked against the recorded ones. Models that rank by generation (PALR, GenRec) are slow: prefer re-running.
"""
import json
import sys
from pathlib import Path

import torch

from llmrec.data.fingerprint import check_same_data, data_fingerprint
from llmrec.evaluation.breakdown import history_breakdown
from llmrec.evaluation.evaluator import evaluate
from llmrec.models.base import Recommender
from llmrec.pipelines.run import load_split, sample_eval_users
from llmrec.utils.io import atomic_write_json


def backfill(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    cfg, ds, split = load_split(run_dir / "config.yaml")
    sample_eval_users(split, cfg.eval.sample_users, cfg.eval.sample_seed)
    model = Recommender.load(run_dir / "model")
    check_same_data(model.data_fingerprint, data_fingerprint(ds, cfg.data, split.protocol), str(run_dir / "model"))
    r = evaluate(model, split.test, ks=cfg.eval.ks, mask_history=cfg.eval.mask_history, batch_size=cfg.eval.batch_size,
                 protocol=m.get("eval_protocol", "full"), progress=False, keep_rows=True)
    for k, v in m["metrics"]["test"].items():
        if abs(r["metrics"].get(k, v) - v) > 1e-6:
            raise SystemExit(f"{run_dir}: {k} re-evaluated as {r['metrics'][k]:.6f}, recorded {v:.6f}; not written")
    m["by_history_length"] = {"test": history_breakdown([len(h) for h in split.test.histories], r["rows"])}
    atomic_write_json(run_dir / "metrics.json", m)
    return m


if __name__ == "__main__":
    torch.set_num_threads(1)
    for d in sys.argv[1:]:
        m = backfill(Path(d))
        print(d, " ".join(f"{b['history']}:{b['users']}" for b in m["by_history_length"]["test"]))
