#!/usr/bin/env bash
# The main job end to end on the built-in synthetic ShEMO-layout corpus (called by `make demo`):
# write the corpus, fit a tiny wav2vec2-architecture model, test the best checkpoint, predict.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DEMO_DIR=${DEMO_DIR:-demo_data}
start=$(date +%s)

"$PY" -m ser synth --layout shemo --out "$DEMO_DIR/shemo" --overwrite
"$PY" -m ser fit -c configs/demo.yaml -c configs/data/shemo.yaml \
  --data.root "$DEMO_DIR/shemo" --data.cache_dir "$DEMO_DIR/cache" --data.batch_size 16 \
  --test_after_fit true
run_dir=$(ls -td lightning_logs/demo/version_* | head -n 1)
"$PY" -m ser predict --ckpt_path "$run_dir/checkpoints/best.ckpt" \
  --data.paths "[$DEMO_DIR/shemo/female]" --output "$run_dir/demo_predictions.csv"

"$PY" - "$run_dir" "$(( $(date +%s) - start ))" <<'PYEOF'
import json, sys
run_dir, seconds = sys.argv[1], sys.argv[2]
metrics = json.load(open(f"{run_dir}/test_metrics.json"))
print(f"\nDemo finished in {seconds} s. Test metrics (synthetic ShEMO-layout corpus, chance UA = 1/6):")
for key in sorted(metrics):
    print(f"  {key:<28} {metrics[key]:.4f}")
print(f"\nRun directory: {run_dir}")
for name in ("config.yaml", "splits/", "checkpoints/best.ckpt", "test_metrics.json",
             "predictions.csv", "confusion_matrix.png", "demo_predictions.csv"):
    print(f"  {run_dir}/{name}")
print("TensorBoard: .venv/bin/tensorboard --logdir lightning_logs/demo")
PYEOF
