#!/usr/bin/env bash
# Dimensional emotion end to end on the synthetic corpus (called by `make demo-dimensional`): write
# the corpus (its manifest.csv holds each file's arousal and valence), fit the demo's tiny model
# with a regression head and the CCC loss, test the best checkpoint (test_metrics.json: CCC,
# Pearson r and MAE per dimension), predict.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DEMO_DIR=${DEMO_DIR:-demo_data}
start=$(date +%s)

"$PY" -m ser synth --layout shemo --out "$DEMO_DIR/shemo" --overwrite
"$PY" -m ser fit -c configs/demo.yaml -c configs/trainer/select_on_ccc.yaml \
  -c configs/demo_dimensional.yaml \
  --data.path "$DEMO_DIR/shemo/manifest.csv" --data.loader.cache_dir "$DEMO_DIR/cache" \
  --data.loader.batch_size 16 --test_after_fit true
run_dir=$(ls -td lightning_logs/demo_dimensional/version_* | head -n 1)
"$PY" -m ser predict --ckpt_path "$run_dir/checkpoints/best.ckpt" \
  --data.paths "[$DEMO_DIR/shemo/female]" --output "$run_dir/demo_predictions.csv"

echo
echo "Dimensional demo finished in $(( $(date +%s) - start )) s."
"$PY" scripts/run_summary.py "$run_dir" "synthetic corpus, arousal and valence on a 1-5 scale" \
  config.yaml splits/ checkpoints/best.ckpt test_metrics.json predictions.csv demo_predictions.csv
