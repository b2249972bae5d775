"""bf16 against fp32 for CPU LLM work, same machine, same inputs, alternated so both see the same load.

    .venv/bin/python benchmarks/llm_dtype_cpu.py CONFIG MODEL_DIR [--records 6] [--gen 8] [--out FILE.json]

CONFIG/MODEL_DIR: an LLM-TRSR config and its saved model (tuned LoRA + summaries). Scores the first ``--records``
test records (1 positive + 20 negatives, prefix-cached Yes/No scoring) with the model in fp32 and in a bf16 copy,
record by record in alternating order; then generates ``--gen`` summaries of 40 tokens greedily in both dtypes
(no cache). Reports prompts/s and tokens/s per dtype, the largest |P(yes)| difference, how often the two dtypes put
the same candidate first, the mean Kendall tau of the two candidate orders, and how many generated summaries are
identical. Nothing here changes what `llmrec run` does: a run's dtype is the backbone's (fp32 on CPU by default).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np
import torch
from bench_common import emit, first_test_records


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    i, j = np.triu_indices(len(a), 1)
    s = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return float(s.mean())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("model_dir")
    ap.add_argument("--records", type=int, default=6)
    ap.add_argument("--gen", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    from llmrec.llm.generation import GenerationSettings, generate
    from llmrec.models.base import HistoryBatch, Recommender

    cfg, _, split, es = first_test_records(a.config, a.records)
    m = Recommender.load(a.model_dir)
    bb = m._backbone()
    models = {"float32": bb.model, "bfloat16": copy.deepcopy(bb.model).to(torch.bfloat16)}
    out: dict = {"config": a.config, "model_dir": a.model_dir, "threads": a.threads, "records": len(es),
                 "cpu_flags_bf16": "avx512_bf16" in open("/proc/cpuinfo").read(), "loadavg_start": os.getloadavg()}
    secs = {k: 0.0 for k in models}
    scores: dict[str, list] = {k: [] for k in models}
    for r in range(len(es)):
        batch = HistoryBatch(es.users[r:r + 1], es.histories[r:r + 1])
        cand = torch.from_numpy(es.candidates[r:r + 1])
        for k in (("float32", "bfloat16") if r % 2 == 0 else ("bfloat16", "float32")):
            bb.model = models[k]
            t = time.perf_counter()
            s = m.score_candidates(batch, cand)
            secs[k] += time.perf_counter() - t
            scores[k].append(s.double().numpy()[0])
        print(f"record {r + 1}/{len(es)}: fp32 {secs['float32']:.1f}s bf16 {secs['bfloat16']:.1f}s", file=sys.stderr, flush=True)
    n = int(es.candidates.size)
    f, h = np.stack(scores["float32"]), np.stack(scores["bfloat16"])
    out["scoring"] = {
        "prompts": n,
        **{k: {"seconds": round(secs[k], 2), "prompts_per_s": round(n / secs[k], 3)} for k in models},
        "speedup_bf16": round(secs["float32"] / secs["bfloat16"], 2),
        "max_abs_p_yes_difference": float(np.abs(f - h).max()),
        "same_top1": float(np.mean(f.argmax(1) == h.argmax(1))),
        "mean_kendall_tau": float(np.mean([kendall_tau(x, y) for x, y in zip(f, h)])),
    }
    # generation: block-summary-like prompts from the records' item texts
    prompts = []
    for hist in split.test.histories[: a.gen]:
        items = "; ".join(m.item_texts[i] for i in hist[-5:])
        prompts.append(f"Summarize what this shopper likes in one sentence. Items: {items}")
    gs = GenerationSettings(max_new_tokens=40, batch_size=len(prompts), min_new_tokens=40) if "min_new_tokens" in GenerationSettings.model_fields \
        else GenerationSettings(max_new_tokens=40, batch_size=len(prompts))
    gen = {}
    for k in ("float32", "bfloat16", "float32", "bfloat16"):
        bb.model = models[k]
        t = time.perf_counter()
        res = generate(bb, prompts, gs, progress=False)
        dt = time.perf_counter() - t
        g = gen.setdefault(k, {"seconds": 0.0, "tokens": 0, "texts": res.texts})
        g["seconds"] += dt
        g["tokens"] += res.generated_tokens
    out["generation"] = {k: {"seconds": round(v["seconds"], 2), "tokens_per_s": round(v["tokens"] / v["seconds"], 2)} for k, v in gen.items()}
    out["generation"]["speedup_bf16"] = round(out["generation"]["float32"]["tokens_per_s"] and
                                              out["generation"]["bfloat16"]["tokens_per_s"] / out["generation"]["float32"]["tokens_per_s"], 2)
    out["generation"]["identical_texts"] = sum(x == y for x, y in zip(gen["float32"]["texts"], gen["bfloat16"]["texts"]))
    out["generation"]["prompts"] = len(prompts)
    out["loadavg_end"] = os.getloadavg()
    return emit(out, a.out)


if __name__ == "__main__":
    main()
