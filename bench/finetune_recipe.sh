#!/usr/bin/env bash
# The fine-tune recipe of docs/accuracy.md, end to end, then its score beside the default weights and the
# stock pipeline (`bench/finetune.py --model-dir`): what `make finetune` runs.
#
#   bench/finetune_recipe.sh [WORK]      # default WORK: data/finetune (git-ignored)
#
# Trains on the ICDAR 2015 tune half only (img_1-img_500, a folder of links that bench/finetune.py makes)
# and on generated photos (`wildocr.samples`, seeds 7001 and 7002: not the guard set's 2024). Each step
# writes one model folder under WORK and leaves WORK/<step>.done when it finished; a finished step is
# skipped, so a run that was stopped goes on where it was. About 90 minutes on 2 CPU cores (docs/accuracy.md has each step's time);
# `--max-minutes` caps each step, so a slower machine trains fewer steps. Needs the `train` extra and
# ../shared (or $WILDOCR_SHARED) with ic15-train/.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-data/finetune}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
BIN=${BIN:-.venv/bin}
PY="$BIN/python"
TUNE=$("$PY" bench/finetune.py --tune-half-only --work "$WORK")
[ -n "$TUNE" ] || exit 0  # no ICDAR 2015 data: bench/finetune.py said SKIP

step() {  # step NAME COMMAND...: run it, unless WORK/NAME.done says an earlier run finished it
  local name=$1
  shift
  if [ -f "$WORK/$name.done" ]; then
    echo "== $name: done before ($WORK/$name)"
    return
  fi
  echo "== $name: $(date -u +%H:%M:%S) $*"
  "$@"
  touch "$WORK/$name.done"
}

train() { "$BIN/wildocr" train "$@"; }

# det-1 turns the stock line detector towards words; the held-out photos read no better until det-2, so
# det-1 keeps its epoch by the map loss. det-6 and final-2 were measured that way too (docs/accuracy.md).
step det-1 train det --data "$TUNE" --out "$WORK/det-1" --epochs 20 --steps-per-epoch 50 --patience 3 \
  --max-minutes 13 --select-by loss
step det-2 train det --data "$TUNE" --out "$WORK/det-2" --base "$WORK/det-1" --lr 5e-5 --epochs 40 \
  --steps-per-epoch 100 --patience 4 --max-minutes 40
step final train rec --data "$TUNE" --base "$WORK/det-2" --out "$WORK/final" --lr 1e-5 --epochs 4 \
  --patience 2 --max-minutes 16
step gen1 "$PY" -m wildocr.samples "$WORK/gen1" --count 150 --seed 7001 --hard
step gen2 "$PY" -m wildocr.samples "$WORK/gen2" --count 150 --seed 7002 --hard
step det-6 train det --data "$TUNE" --data "$WORK/gen1" --base "$WORK/final" --out "$WORK/det-6" --lr 3e-5 \
  --epochs 4 --steps-per-epoch 100 --patience 2 --max-minutes 22 --select-by loss
step final-2 train det --data "$TUNE" --data "$WORK/gen1" --data "$WORK/gen2" --base "$WORK/det-6" \
  --out "$WORK/final-2" --lr 2e-5 --epochs 2 --steps-per-epoch 100 --patience 1 --max-minutes 14 \
  --select-by loss
step verifier train verifier --data "$TUNE" --out "$WORK/final-2"
"$PY" bench/finetune.py --model-dir "$WORK/final-2" --work "$WORK/bench" --json "$WORK/final-2.json" \
  ${WRITE_DOCS:+--write-docs}
