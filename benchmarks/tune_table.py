"""The tuning table of BENCHMARKS.md ("Tuning on Beauty"), from the raw JSON in benchmarks/results/tune/.

    .venv/bin/python benchmarks/tune_table.py --collect runs/tune   # copy tune.json + metrics.json files in
    .venv/bin/python benchmarks/tune_table.py --configs             # write configs/beauty/{model}-tuned.yaml
    .venv/bin/python benchmarks/tune_table.py                       # print the Markdown table

Per model: ``beauty-{m}.json`` (the study's tune.json), ``beauty-{m}-best.json`` (metrics.json of the best configuration
re-trained once and tested once) and ``beauty-{m}-untuned.json`` (metrics.json of the committed untuned config trained
with the same budget, in the same session)."""
import json
import shutil
import yaml
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


def write_configs() -> None:
    """configs/beauty/{m}-tuned.yaml: the committed config with the study's best values (its own comments replaced)."""
    for m in MODELS:
        s = load(f"beauty-{m}")
        if s is None or "best" not in s:
            continue
        best = s["best"]
        cfg = yaml.safe_load(Path(f"configs/beauty/{m}.yaml").read_text())
        cfg["name"] = f"beauty-{m}-tuned"
        for k, v in best["params"].items():
            sec, key = k.split(".", 1)
            cfg.setdefault(sec, {})[key] = float(f"{v:.12g}") if isinstance(v, float) else v
        ps = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in best["params"].items())
        head = (f"# {m} on Amazon Beauty, tuned: configs/beauty/{m}.yaml with the best of {len(s['trials'])} Optuna trials (TPE, "
                f"median pruning)\n# on validation NDCG@10, each trial capped at 4 minutes on one thread "
                f"(configs/spaces/beauty-{m}.yaml;\n# BENCHMARKS.md \"Tuning on Beauty\"). Best trial #{best['trial']}, "
                f"validation NDCG@10 {best['valid']:.4f}:\n# {ps}.\n# BENCHMARKS.md's tuned row trained it with "
                f"--set threads=1 --set train.max_minutes=12 (the untuned row likewise).\n")
        out = Path(f"configs/beauty/{m}-tuned.yaml")
        out.write_text(head + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None))
        print(f"wrote {out}")


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
    elif sys.argv[1:2] == ["--configs"]:
        write_configs()
    else:
        main()
