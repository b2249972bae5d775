"""LLM-TRSR scoring throughput: the shared-prefix KV cache against whole prompts, same machine, same records.

    .venv/bin/python benchmarks/llm_trsr_throughput.py CONFIG [--model RUN/model] [--records 5] [--out FILE.json]

Scores the first ``--records`` test records of CONFIG's split (1 positive + 20 negatives each) twice per record,
once with ``prefix_cache: true`` and once with ``false``, alternating record by record so that both paths see
the same machine load; reports prompts/s of each path, the speed-up and the largest absolute score difference.
``--model``: a saved LLM-TRSR model directory (tuned adapters + its summaries); without it the config's base
backbone scores untuned (the speed does not depend on the weights). Also reports the generation-cache hit of
the config's summaries (every test history summarised again: n_generated should be 0 after a run).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from bench_common import emit, first_test_records


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--model", default=None)
    ap.add_argument("--records", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    from llmrec.models.base import HistoryBatch, Recommender
    from llmrec.models.llm_trsr import LLMTRSR, render_item

    cfg, ds, split, es = first_test_records(a.config, a.records)
    out: dict = {"config": a.config, "model": a.model, "records": len(es), "candidates": int(es.candidates.shape[1]),
                 "threads": a.threads}
    if a.model:
        model = Recommender.load(a.model)
    else:  # the base backbone, untuned; summaries from the generation cache (generated if missing)
        model = LLMTRSR(cfg.params)
        model.n_items, model.n_users = ds.n_items, ds.n_users
        dom = model._domain(ds.name)
        fields = model._fields(ds, dom)
        model._extra = {"domain": dom, "item_fields": fields}
        rows = {r["item"]: r for r in ds.item_text.iter_rows(named=True)}
        model.item_texts = [render_item(rows.get(i, {}), fields, model.params.item_max_chars) for i in range(ds.n_items)]
        model._bb = model._load(model.params.backbone, model.params.backbone_overrides)
    t = time.perf_counter()
    hit = model.summarize([model._window(h) for h in split.test.histories], progress=False) if not a.model else None
    if hit is not None:
        out["summary_cache"] = {k: hit.get(k) for k in ("histories", "n_prompts", "n_cached", "n_generated")}
        out["summary_cache"]["seconds"] = round(time.perf_counter() - t, 2)
    tok = model._backbone().tokenizer
    heads = [model.prefix_and_tail(model._window(h), tok)[0] for h in es.histories]
    out["prefix_tokens_mean"] = float(np.mean([len(tok(h)["input_ids"]) for h in heads]))
    secs = {True: 0.0, False: 0.0}
    scores = {True: [], False: []}
    for r in range(len(es)):
        batch = HistoryBatch(es.users[r:r + 1], es.histories[r:r + 1])
        cand = torch.from_numpy(es.candidates[r:r + 1])
        for cached in ((True, False) if r % 2 == 0 else (False, True)):
            model.params = model.params.model_copy(update={"prefix_cache": cached})
            t = time.perf_counter()
            s = model.score_candidates(batch, cand)
            secs[cached] += time.perf_counter() - t
            scores[cached].append(s)
        print(f"record {r + 1}/{len(es)}: cached {secs[True]:.1f}s, full {secs[False]:.1f}s", file=sys.stderr, flush=True)
    n = int(es.candidates.size)
    diff = float((torch.cat(scores[True]) - torch.cat(scores[False])).abs().max())
    out.update({
        "prompts": n,
        "prefix_cache": {"seconds": round(secs[True], 2), "prompts_per_s": round(n / secs[True], 3)},
        "full_prompts": {"seconds": round(secs[False], 2), "prompts_per_s": round(n / secs[False], 3)},
        "speedup": round(secs[False] / secs[True], 2),
        "max_abs_score_difference": diff,
    })
    return emit(out, a.out)


if __name__ == "__main__":
    main()
