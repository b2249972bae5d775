#!/usr/bin/env bash
# The main job: Pop, ItemKNN and NextId on Amazon Beauty (leave-one-out, full ranking, history masked),
# once with randomly remapped item ids (the default) and once with the original P5 ids.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/llmrec run configs/beauty/pop.yaml configs/beauty/itemknn.yaml configs/beauty/nextid.yaml \
  configs/beauty/nextid-original-ids.yaml --out "${1:-runs/main}" --overwrite
