"""Markdown table of the GenRec benchmark rows read from metrics.json files (run from the repo root)."""
import json
from pathlib import Path

R = Path("runs/genrec")  # the run directories of the GenRec benchmark (see BENCHMARKS.md)
KS = ["HR@5", "NDCG@5", "HR@10", "NDCG@10"]
rows = []
for ds in ("beauty", "sports", "yelp"):
    for n in ("genrec", "genrec-nopretrain", "genrec-original-ids", "genrec-original-ids-nopretrain"):
        f = R / f"{ds}-{n}" / "metrics.json"
        if not f.exists():
            continue
        m = json.loads(f.read_text())
        fi, g = m["fit_info"], m.get("generation", {}).get("test", {})
        ph = fi["phases"]
        rows.append([ds, f"GenRec {n}", m["id_order"], m["metrics"]["test"], m["eval_sample"]["users"],
                     f"{fi['genrec']['arch']} {m['config']['params']['backbone']} {m['config']['params']['overrides']}",
                     f"pre {ph['pretrain']['steps']}/{ph['pretrain']['steps_planned']} steps {ph['pretrain']['seconds']:.0f}s; "
                     f"ft {ph['finetune']['steps']}/{ph['finetune']['steps_planned']} steps {ph['finetune']['seconds']:.0f}s; "
                     f"best {fi['best_phase']} {fi['best_step']}; budget-stopped {fi['stopped_by_budget']}",
                     f"inv {g.get('invalid')} dup {g.get('duplicates')} hist {g.get('history_items')} short {g.get('short_lists')}"])
    for n in ("nextid-2000", "nextid-original-ids-2000"):
        f = R / "baselines" / f"{ds}-{n}" / "metrics.json"
        if f.exists():
            m = json.loads(f.read_text())
            rows.append([ds, "NextId", m["id_order"], m["metrics"]["test"], m["eval_sample"]["users"], "-", "learning-free", "-"])
    f = R / "baselines" / f"{ds}-sasrec-2000.json"
    if f.exists():
        m = json.loads(f.read_text())
        rows.append([ds, "SASRec (runs/retrievers/beauty-sasrec/model)", m["id_order"], m["metrics"]["test"], m["eval_sample"]["users"], "-", "-", "-"])
print("| dataset | model | ids | " + " | ".join(KS) + " | test users | backbone | training | invalid/dup/history/short |")
print("|" + "---|" * (len(KS) + 7))
for ds, name, ids, met, n, bb, tr, gen in rows:
    print(f"| {ds} | {name} | {ids} | " + " | ".join(f"{met[k]:.4f}" for k in KS) + f" | {n} | {bb} | {tr} | {gen} |")
