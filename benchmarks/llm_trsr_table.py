"""Markdown table of the LLM-TRSR benchmark rows, read from the metrics.json copies in a results folder
(default benchmarks/results/llm-trsr/records-100-20-120; run from the repo root). Every number is read, none typed."""
import json
import sys
from pathlib import Path

R = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/llm-trsr/records-100-20-120")
ROWS = [("llm-trsr-hierarchical", "LLM-TRSR hierarchical"), ("llm-trsr-recurrent", "LLM-TRSR recurrent"),
        ("llm-trsr-tallrec", "TALLRec-style, no summary"), ("trsr-sasrec", "SASRec"), ("trsr-gru4rec", "GRU4Rec"),
        ("trsr-pop", "Pop")]
KS = ["Recall@3", "Recall@5", "Recall@10", "MRR@3", "MRR@5", "MRR@10", "TieRate"]


def seconds(m: dict) -> str:
    fi = m["fit_info"]
    if "llm_trsr" in fi:
        s = fi["llm_trsr"]["seconds"]
        return (f"summaries {s['summaries']:,.0f}; tuning {s['tuning']:,.0f}; scoring {m['seconds'].get('eval_valid', 0):,.0f} valid"
                f" + {m['seconds']['eval_test']:,.0f} test")
    if "epochs_run" in fi:
        how = "stopped by its budget" if fi.get("stopped_by_budget") else "early-stopped" if fi.get("stopped_early") else "epoch cap"
        return f"training {m['seconds']['fit']:,.0f} ({fi['epochs_run']} epochs, {how})"
    return f"fit {m['seconds']['fit']:.2f}"


ref = None
print(f"| row (test records) | {' | '.join(k.replace('Recall', 'R') for k in KS)} | seconds |")
print("|---" * (len(KS) + 2) + "|")
for name, label in ROWS:
    f = R / f"{name}.json"
    if not f.exists():
        continue
    m = json.loads(f.read_text())
    t = m["metrics"]["test"]
    ref = ref or m["split_sizes"]["records_random_reference"]
    cells = " | ".join(f"{t[k]:.3f}".lstrip("0") if k in t else "–" for k in KS)
    print(f"| {label} (`{name}`; n={m['split_sizes']['records']['test']}) | {cells} | {seconds(m)} |")
if ref:
    print("| uniform random (expected value) | " + " | ".join(f"{ref[k]:.3f}".lstrip("0") if k in ref else "–" for k in KS)
          + " | – |")
