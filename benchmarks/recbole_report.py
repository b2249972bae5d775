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


def _moving(vals: list, w: int = 3) -> list:
    """Mean of each epoch's validation NDCG@10 and the w - 1 before it (None for the first w - 1 epochs)."""
    v = [x if x is not None else float("nan") for x in vals]
    return [None if i < w - 1 else sum(v[i - w + 1:i + 1]) / w for i in range(len(v))]


def _smoothed(rb: dict, lr: dict, w: int = 3) -> dict:
    """The same comparison on w-epoch moving averages of validation NDCG@10: on 943 validation users one epoch's value
    moves by about +-0.003, so a single best epoch partly measures luck. Supplementary; the issue's ratio is above."""
    ra, la = _moving(rb["valid_ndcg10"], w), _moving(lr["valid_ndcg10"], w)
    if not any(x is not None for x in ra):
        return {}
    target = max(x for x in ra if x is not None)
    be = ra.index(target) + 1
    rb_s = _seconds_through(rb, be)
    hit, lr_s = _first_reach(lr, target, la)
    return {"window_epochs": w, "recbole_best": target, "recbole_epoch": be, "recbole_seconds": rb_s,
            "llmrec_best": max((x for x in la if x is not None), default=None),
            "llmrec_epoch_reaching_it": hit, "llmrec_seconds": lr_s,
            "ratio": None if not lr_s else rb_s / lr_s}


def _seconds_through(run: dict, epochs: int) -> float:
    """Train + validation seconds of a run's first ``epochs`` epochs."""
    return sum(run["seconds_per_epoch"][:epochs]) + sum(v or 0.0 for v in run["valid_seconds"][:epochs])


def _first_reach(run: dict, level: float, vals: list | None = None) -> tuple[int | None, float | None]:
    """(epoch, train + validation seconds through it) of the first epoch whose validation NDCG@10 (or ``vals``, one
    value per epoch) reaches ``level``; (None, None) when none does."""
    vals = run["valid_ndcg10"] if vals is None else vals
    hit = next((i for i, v in enumerate(vals) if v is not None and v >= level), None)
    return (None, None) if hit is None else (hit + 1, _seconds_through(run, hit + 1))


def _levels(rb: dict, lr: dict, fractions=(0.8, 0.85, 0.9, 0.95, 1.0)) -> list[dict]:
    """Seconds for each system to first reach each fraction of RecBole's best validation NDCG@10, and their
    quotient where both do (1.0 is the issue's time_to_quality_ratio)."""
    out, best = [], max(v for v in rb["valid_ndcg10"] if v is not None)
    for f in fractions:
        a, b = _first_reach(rb, f * best)[1], _first_reach(lr, f * best)[1]
        out.append({"fraction_of_recbole_best": f, "valid_ndcg10": f * best, "recbole_seconds": a, "llmrec_seconds": b,
                    "ratio": a / b if a and b else None})
    return out


def settings(r: dict) -> dict:
    """The llmrec run's settings beyond the matched ones: its params, then its train.* overrides."""
    return {**(r.get("llmrec_params") or {}), **{f"train.{k}": v for k, v in (r.get("llmrec_train") or {}).items()}}


def time_to_quality(runs: list[dict]) -> list[dict]:
    """Per dataset and model: llmrec's seconds to first reach RecBole's best validation NDCG@10 (both unmasked)."""
    out = []
    ok = [r for r in runs if r.get("rc") == 0]
    for rb in (r for r in ok if r["system"] == "recbole" and r.get("valid_ndcg10")):
        target = max(rb["valid_ndcg10"])
        be = rb["valid_ndcg10"].index(target) + 1
        rb_s = _seconds_through(rb, be)
        for lr in (r for r in ok if r["system"] == "llmrec" and r["dataset"] == rb["dataset"] and r["model"] == rb["model"]
                   and r.get("mask_history") is False and r.get("valid_ndcg10")):
            vals = lr["valid_ndcg10"]
            hit, lr_s = _first_reach(lr, target)
            masked = next((r for r in ok if r["system"] == "llmrec" and r["dataset"] == rb["dataset"]
                           and r["model"] == rb["model"] and r.get("mask_history") is True
                           and settings(r) == settings(lr)), None)
            out.append({
                "dataset": rb["dataset"], "model": rb["model"], "llmrec_params": lr.get("llmrec_params"),
                "llmrec_train": lr.get("llmrec_train"),
                "llmrec_seed": lr.get("seed"), "llmrec_batch_size": lr.get("batch_size"),
                "llmrec_median_seconds_per_epoch": lr.get("median_seconds_per_epoch"),
                "recbole_best_valid_ndcg10": target, "recbole_best_epoch": be, "recbole_seconds_to_best": rb_s,
                "recbole_epochs_run": len(rb["valid_ndcg10"]),
                "llmrec_epoch_reaching_it": hit, "llmrec_seconds_to_reach": lr_s,
                "llmrec_best_valid_ndcg10": max(v for v in vals if v is not None),
                "llmrec_epochs_run": len(vals),
                "time_to_quality_ratio": None if not lr_s else rb_s / lr_s,
                "test": {"recbole": rb.get("test"), "llmrec_unmasked": lr.get("test"),
                         "llmrec_masked": None if masked is None else masked.get("test"),
                         "llmrec_unmasked_model_tested_masked": lr.get("test_history_masked_same_model")},
                "valid_seconds_counted": "train + validation seconds of every epoch up to and including the one counted",
                "smoothed": _smoothed(rb, lr),
                "levels": _levels(rb, lr),
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
        label = r["system"] + "".join(f" {k}={v}" for k, v in settings(r).items())
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
                  f" [llmrec {settings(t)}]" if settings(t) else ""))
        lv = [f"{x['fraction_of_recbole_best']:.0%} ({x['valid_ndcg10']:.4f}): " + (f"{x['ratio']:.1f}x" if x["ratio"] else "-")
              for x in t.get("levels") or []]
        if lv:
            print("    ratio at fractions of RecBole's best validation NDCG@10: " + ", ".join(lv))
        sm = t.get("smoothed") or {}
        if sm:
            print(f"    {sm['window_epochs']}-epoch moving average: RecBole best {sm['recbole_best']:.4f} (epoch {sm['recbole_epoch']}, "
                  f"{sm['recbole_seconds']:.0f} s); llmrec " + (
                      f"reached it at epoch {sm['llmrec_epoch_reaching_it']} in {sm['llmrec_seconds']:.1f} s: ratio {sm['ratio']:.1f}x"
                      if sm["ratio"] else f"never reached it (best {sm['llmrec_best']:.4f})"))


def ttq_table(res: dict) -> str:
    """One Markdown row per compared llmrec run: its time to RecBole's best validation NDCG@10 and the tests."""
    rows = ["| dataset | llmrec SASRec params | seed | batch | s / epoch | best valid NDCG@10 | s to RecBole's best | ratio | "
            "ratio at 95% / 90% | 3-epoch mean best (RecBole's) | test NDCG@10 unmasked (RecBole's) | HR@10 | test NDCG@10 masked, same model |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    f = lambda v, d=4: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    for t in res.get("time_to_quality") or []:
        lv = {x["fraction_of_recbole_best"]: x["ratio"] for x in t.get("levels") or []}
        sm, te = t.get("smoothed") or {}, t.get("test") or {}
        lu, rb = te.get("llmrec_unmasked") or {}, te.get("recbole") or {}
        same = te.get("llmrec_unmasked_model_tested_masked")
        lm, how = (same, "") if same else (te.get("llmrec_masked") or {}, " (own run)")
        params = ", ".join(f"{k}={v}" for k, v in settings(t).items()) or "(defaults: the paper's)"
        rows.append(
            f"| {t['dataset']} | {params} | {t.get('llmrec_seed', '–')} | {t.get('llmrec_batch_size', '–')} | "
            f"{f(t.get('llmrec_median_seconds_per_epoch'), 2)} | {f(t['llmrec_best_valid_ndcg10'])} (RecBole {f(t['recbole_best_valid_ndcg10'])}) | "
            f"{'never' if t['llmrec_seconds_to_reach'] is None else f(t['llmrec_seconds_to_reach'], 1)} (RecBole {t['recbole_seconds_to_best']:.0f}) | "
            f"{'null' if t['time_to_quality_ratio'] is None else f(t['time_to_quality_ratio'], 1) + 'x'} | "
            f"{'–' if lv.get(0.95) is None else f(lv[0.95], 1) + 'x'} / {'–' if lv.get(0.9) is None else f(lv[0.9], 1) + 'x'} | "
            f"{f(sm.get('llmrec_best'))} ({f(sm.get('recbole_best'))}) | {f(lu.get('NDCG@10'))} ({f(rb.get('NDCG@10'))}) | "
            f"{f(lu.get('HR@10'))} ({f(rb.get('HR@10'))}) | {f(lm.get('NDCG@10'))}{how if lm else ''} |")
    return "\n".join(rows)
