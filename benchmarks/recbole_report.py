"""Summaries of benchmarks/recbole_side_by_side.py results: per-run timing summary, time to quality, the Markdown table."""

from __future__ import annotations


def summarize(r: dict) -> dict:
    import statistics as st

    s = dict(r)
    spe = r.get("seconds_per_epoch") or []
    vs = [v for v in (r.get("valid_seconds") or []) if v is not None]
    s["mean_seconds_per_epoch"] = st.mean(spe) if spe else None
    s["median_seconds_per_epoch"] = st.median(spe) if spe else None
    s["mean_valid_seconds"] = st.mean(vs) if vs else None
    be = r.get("best_epoch")
    s["seconds_to_best_epoch"] = (sum(spe[:be]) + sum(vs[:be])) if be and spe else None
    return s


def time_to_quality(runs: list[dict]) -> list[dict]:
    """Per dataset and model: llmrec's seconds to first reach RecBole's best validation NDCG@10 (both unmasked)."""
    out = []
    ok = [r for r in runs if r.get("rc") == 0]
    for rb in (r for r in ok if r["system"] == "recbole" and r.get("valid_ndcg10")):
        target = max(rb["valid_ndcg10"])
        be = rb["valid_ndcg10"].index(target) + 1
        rb_s = sum(rb["seconds_per_epoch"][:be]) + sum(rb["valid_seconds"][:be])
        for lr in (r for r in ok if r["system"] == "llmrec" and r["dataset"] == rb["dataset"] and r["model"] == rb["model"]
                   and r.get("mask_history") is False and r.get("valid_ndcg10")):
            vals, spe, vs = lr["valid_ndcg10"], lr["seconds_per_epoch"], lr["valid_seconds"]
            hit = next((i for i, v in enumerate(vals) if v is not None and v >= target), None)
            lr_s = None if hit is None else sum(spe[:hit + 1]) + sum(v or 0.0 for v in vs[:hit + 1])
            masked = next((r for r in ok if r["system"] == "llmrec" and r["dataset"] == rb["dataset"]
                           and r["model"] == rb["model"] and r.get("mask_history") is True
                           and r.get("llmrec_params") == lr.get("llmrec_params")), None)
            out.append({
                "dataset": rb["dataset"], "model": rb["model"], "llmrec_params": lr.get("llmrec_params"),
                "recbole_best_valid_ndcg10": target, "recbole_best_epoch": be, "recbole_seconds_to_best": rb_s,
                "recbole_epochs_run": len(rb["valid_ndcg10"]),
                "llmrec_epoch_reaching_it": None if hit is None else hit + 1, "llmrec_seconds_to_reach": lr_s,
                "llmrec_best_valid_ndcg10": max(v for v in vals if v is not None),
                "llmrec_epochs_run": len(vals),
                "time_to_quality_ratio": None if not lr_s else rb_s / lr_s,
                "test": {"recbole": rb.get("test"), "llmrec_unmasked": lr.get("test"),
                         "llmrec_masked": None if masked is None else masked.get("test")},
                "valid_seconds_counted": "train + validation seconds of every epoch up to and including the one counted",
            })
    return out


def markdown_table(res: dict) -> str:
    rows = ["| dataset | model | system | history masked | epochs | batch | s / train epoch (median) | valid s / epoch | "
            "test eval s | train+valid s to best epoch | peak RSS MB | best epoch | test HR@10 | test NDCG@10 |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    f = lambda v, d=2: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    order = {"llmrec": 0, "recbole": 1}
    runs = sorted(res["runs"], key=lambda r: (r.get("dataset") or "", r.get("model") or "", order.get(r.get("system"), 2),
                                               r.get("epochs") or 0, not r.get("mask_history")))
    for r in runs:
        label = r["system"] + "".join(f" {k}={v}" for k, v in (r.get("llmrec_params") or {}).items())
        head = f"| {r['dataset']} | {r['model']} | {label} | {'–' if r.get('mask_history') is None else ('yes' if r['mask_history'] else 'no')} "
        if r.get("rc") != 0:
            why = "skipped: " + str(r.get("error")) if r.get("rc") is None else f"failed (rc {r.get('rc')})"
            rows.append(head + f"| {why} ||||||||||")
            continue
        t = r.get("test") or {}
        unit = "rows" if r["system"] == "recbole" else "users"
        rows.append(
            head + f"| {r.get('epochs', res.get('epochs'))} | {r.get('batch_size', '?')} {unit} | "
            f"{f(r.get('median_seconds_per_epoch'))} | {f(r.get('mean_valid_seconds'))} | {f(r.get('eval_test_seconds'))} | "
            f"{f(r.get('seconds_to_best_epoch'), 1)} | {f(r.get('peak_rss_mb'), 0)} | {r.get('best_epoch') or '–'} | "
            f"{f(t.get('HR@10'), 4)} | {f(t.get('NDCG@10'), 4)} |")
    return "\n".join(rows)


def print_ttq(res: dict) -> None:
    for t in res.get("time_to_quality") or []:
        print(f"time to quality {t['dataset']}/{t['model']}: RecBole best valid NDCG@10 {t['recbole_best_valid_ndcg10']:.4f} "
              f"in {t['recbole_seconds_to_best']:.0f} s; llmrec " + (
                  f"reached it at epoch {t['llmrec_epoch_reaching_it']} in {t['llmrec_seconds_to_reach']:.1f} s: "
                  f"ratio {t['time_to_quality_ratio']:.1f}x" if t["time_to_quality_ratio"] else
                  f"never reached it (best {t['llmrec_best_valid_ndcg10']:.4f})") + (
                  f" [llmrec params {t['llmrec_params']}]" if t.get("llmrec_params") else ""))
