"""The GenRec tables of BENCHMARKS.md, read from the raw JSON in benchmarks/results/genrec/ (run from the repo root).

    .venv/bin/python benchmarks/genrec_table.py            # one Markdown table per dataset (our rows)

Files: ``{ds}-{variant}.json`` (a GenRec run's metrics.json), ``{ds}-nextid[-original-ids]-2000.json`` (NextId's
metrics.json), ``{ds}-sasrec-2000.json`` (benchmarks/eval_saved.py of the SASRec model on the same seeded users) and
``{ds}-sasrec-train.json`` (that SASRec run's own metrics.json, for its training time). The paper rows are typed into
BENCHMARKS.md from ../shared/specs/palr-genrec.md, never computed here."""
import json
from pathlib import Path

R = Path("benchmarks/results/genrec")
KS = ["HR@5", "NDCG@5", "HR@10", "NDCG@10"]
VARIANTS = {"genrec": ("GenRec (tiny-bart)", "random"), "genrec-nopretrain": ("GenRec w/o pretraining", "random"),
            "genrec-original-ids": ("GenRec (tiny-bart)", "original (P5)"),
            "genrec-original-ids-nopretrain": ("GenRec w/o pretraining", "original (P5)")}


def load(name: str) -> dict | None:
    f = R / f"{name}.json"
    return json.loads(f.read_text()) if f.exists() else None


def row(name: str, ids: str, met: dict, train: str, gen: str) -> str:
    return f"| {name} | {ids} | " + " | ".join(f"{met[k]:.4f}" for k in KS) + f" | {train} | {gen} |"


for ds in ("beauty", "sports", "yelp"):
    out = []
    for v, (name, ids) in VARIANTS.items():
        m = load(f"{ds}-{v}")
        if m is None:
            continue
        ph, g = m["fit_info"]["phases"], m.get("generation", {}).get("test", {})
        note = f"{g.get('invalid')} / {g.get('duplicates')}"
        if g.get("mask_history") is False:  # the beams may return history items (Yelp repeats items)
            note += f"; history items {g.get('history_items'):,} of {g.get('sequences'):,} (`mask_history: false`)"
        out.append(row(name, ids, m["metrics"]["test"], f"{ph['pretrain']['seconds']:,.0f} / {ph['finetune']['seconds']:,.0f}", note))
    for v, ids in (("nextid-2000", "random"), ("nextid-original-ids-2000", "original (P5)")):
        m = load(f"{ds}-{v}")
        if m is not None:
            out.append(row("NextId (rank max(history)+1, +2, …)", ids, m["metrics"]["test"], "–", "–"))
    m, t = load(f"{ds}-sasrec-2000"), load(f"{ds}-sasrec-train")
    if m is not None:
        how = "–" if t is None else (f"{t['seconds']['fit']:,.0f} ({t['fit_info']['epochs_run']} epochs, best "
                                     f"{t['fit_info']['best_epoch']}{', budget-stopped' if t['fit_info']['stopped_by_budget'] else ''})")
        out.append(row(f"SASRec (CE; `{m['model_dir']}`)", m["id_order"], m["metrics"]["test"], how, "–"))
    if out:
        users = {json.loads(f.read_text()).get("eval_sample", {}).get("users") for f in R.glob(f"{ds}-*2000.json")}
        print(f"\n| {ds.capitalize()}, {'/'.join(map(str, sorted(u for u in users if u)))} test users | ids | "
              + " | ".join(KS) + " | training s (pretrain / finetune) | invalid / dup |")
        print("|---|---|" + "---|" * len(KS) + "---|---|")
        print("\n".join(out))
