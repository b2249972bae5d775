"""The tuning table of BENCHMARKS.md ("Tuning on Beauty"), from the raw JSON in benchmarks/results/tune/.

    .venv/bin/python benchmarks/tune_table.py --collect runs/tune   # copy tune.json + metrics.json files in
    .venv/bin/python benchmarks/tune_table.py                       # print the Markdown table

Per model: ``beauty-{m}.json`` (the study's tune.json), ``beauty-{m}-best.json`` (metrics.json of the best configuration
re-trained once and tested once) and ``beauty-{m}-untuned.json`` (metrics.json of the committed untuned config trained
with the same budget, in the same session)."""
import json
import shutil
import sys
from pathlib import Path

R = Path("benchmarks/results/tune")
MODELS = ("sasrec", "bert4rec", "gru4rec", "caser")


def collect(runs: Path) -> None:
    R.mkdir(parents=True, exist_ok=True)
    for m in MODELS:
        for src, dst in ((runs / f"beauty-{m}" / "tune.json", f"beauty-{m}.json"),
                         (runs / f"beauty-{m}" / "best" / "metrics.json", f"beauty-{m}-best.json"),
                         (runs / f"beauty-{m}-untuned" / "metrics.json", f"beauty-{m}-untuned.json")):
            if src.exists():
                shutil.copyfile(src, R / dst)


def load(name: str):
    f = R / f"{name}.json"
    return json.loads(f.read_text()) if f.exists() else None


def fmt_params(p: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]} {v:.2g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}" for k, v in p.items())


def valid_test(m: dict) -> str:
    v = m["fit_info"]["best_valid_metrics"]
    t = m["metrics"]["test"]
    fi = m["fit_info"]
    return (f"{v['HR@10']:.4f} / {v['NDCG@10']:.4f} | {t['HR@10']:.4f} / {t['NDCG@10']:.4f} | "
            f"{fi['epochs_run']} ({fi['best_epoch']}){' budget' if fi.get('stopped_by_budget') else ''}")


def main() -> None:
    print("| model | trials: complete / pruned / failed | search min | best trial (valid NDCG@10 in its 4 min) | "
          "tuned: valid HR@10 / NDCG@10 | tuned: test HR@10 / NDCG@10 | epochs (best) | "
          "untuned: valid HR@10 / NDCG@10 | untuned: test HR@10 / NDCG@10 | epochs (best) |")
    print("|---|---|---:|---|---|---|---|---|---|---|")
    for m in MODELS:
        s, b, u = load(f"beauty-{m}"), load(f"beauty-{m}-best"), load(f"beauty-{m}-untuned")
        if s is None or b is None:
            continue
        st = [t["state"] for t in s["trials"]]
        mins = sum(t["seconds"] or 0 for t in s["trials"]) / 60
        best = s["best"]
        print(f"| {m} | {st.count('COMPLETE')} / {st.count('PRUNED')} / {st.count('FAIL')} | {mins:.0f} | "
              f"#{best['trial']}: {fmt_params(best['params'])} ({best['valid']:.4f}) | {valid_test(b)} | "
              + (valid_test(u) if u else "– | – | –") + " |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--collect"]:
        collect(Path(sys.argv[2]))
    else:
        main()
