#!/usr/bin/env bash
# The main job end to end on the built-in synthetic ShEMO-layout corpus (called by `make demo`):
# write the corpus, fit a tiny wav2vec2-architecture model, test the best checkpoint, predict.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DEMO_DIR=${DEMO_DIR:-demo_data}
start=$(date +%s)

"$PY" -m ser synth --layout shemo --out "$DEMO_DIR/shemo" --overwrite
"$PY" -m ser fit -c configs/demo.yaml -c configs/data/shemo.yaml \
  --data.root "$DEMO_DIR/shemo" --data.loader.cache_dir "$DEMO_DIR/cache" --data.loader.batch_size 16 \
  --test_after_fit true
run_dir=$(ls -td lightning_logs/demo/version_* | head -n 1)
"$PY" -m ser predict --ckpt_path "$run_dir/checkpoints/best.ckpt" \
  --data.paths "[$DEMO_DIR/shemo/female]" --output "$run_dir/demo_predictions.csv"

echo
echo "Demo finished in $(( $(date +%s) - start )) s."
"$PY" scripts/run_summary.py "$run_dir" "synthetic ShEMO-layout corpus, chance UA = 1/6" \
  config.yaml splits/ checkpoints/best.ckpt test_metrics.json predictions.csv \
  confusion_matrix.png demo_predictions.csv
