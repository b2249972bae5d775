"""Setup and output shared by the LLM benchmark scripts (llm_dtype_cpu.py, llm_trsr_throughput.py)."""
from __future__ import annotations

import json

import numpy as np


def first_test_records(config: str, n: int):
    """The config, its dataset, its split and the first ``n`` records of the test split (progress bars off)."""
    from llmrec.pipelines.run import load_split

    cfg, ds, split = load_split(config, ["progress=false"])
    return cfg, ds, split, split.test.subset(np.arange(min(n, len(split.test))))


def emit(out: dict, path: str | None) -> dict:
    """Print the result as JSON and, when ``path`` is given, write it there atomically."""
    print(json.dumps(out, indent=1))
    if path:
        from llmrec.utils.io import atomic_write_json

        atomic_write_json(path, out)
    return out
