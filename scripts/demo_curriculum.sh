#!/usr/bin/env bash
# The cross-lingual curriculum end to end (called by `make demo-curriculum`): write synthetic
# IEMOCAP- and ShEMO-layout corpora, fit the tiny model on IEMOCAP then ShEMO inside one run
# (configs/demo_curriculum.yaml), and test the best ShEMO-stage checkpoint on ShEMO's test split.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DEMO_DIR=${DEMO_DIR:-demo_data}
CORPORA="$DEMO_DIR/curriculum"
start=$(date +%s)

# Smaller than `make demo`'s corpus, so both stages fit in a few minutes on 2 CPU cores.
"$PY" -m ser synth --layout iemocap --out "$CORPORA/iemocap" --per-speaker 24 --overwrite
"$PY" -m ser synth --layout shemo --out "$CORPORA/shemo" --per-speaker 30 --overwrite
"$PY" -m ser fit -c configs/demo.yaml -c configs/demo_curriculum.yaml \
  --data.init_args.stages.iemocap.init_args.root "$CORPORA/iemocap" \
  --data.init_args.loader.cache_dir "$DEMO_DIR/cache" \
  --data.init_args.stages.shemo.init_args.root "$CORPORA/shemo" \
  --test_after_fit true
run_dir=$(ls -td lightning_logs/demo_curriculum/version_* | head -n 1)

"$PY" - "$run_dir" "$(( $(date +%s) - start ))" <<'PYEOF'
import sys
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run_dir, seconds = sys.argv[1], sys.argv[2]
events = EventAccumulator(run_dir, size_guidance={"scalars": 0}).Reload()
stages = [int(s.value) for s in events.Scalars("curriculum/stage")]
val_ua = [s.value for s in events.Scalars("val/UA")]
switch = [s.value for s in events.Scalars("curriculum/switch_seconds")]
best = torch.load(f"{run_dir}/checkpoints/best.ckpt", map_location="cpu", weights_only=False)
print(f"\nCurriculum demo finished in {seconds} s.")
print("epoch  stage    val/UA  (stage 0: IEMOCAP-layout val, 4 classes; 1: ShEMO-layout, 6)")
for epoch, (stage, ua) in enumerate(zip(stages, val_ua)):
    print(f"{epoch:>5}  {stage:>5}  {ua:8.4f}")
print(f"stage switch took {', '.join(f'{s:.3f}' for s in switch)} s; best checkpoint: epoch "
      f"{best['epoch']} (judged on the ShEMO-layout val set only)")
PYEOF
"$PY" scripts/run_summary.py "$run_dir" "synthetic ShEMO-layout test split, chance UA = 1/6" \
  config.yaml splits/iemocap/ splits/shemo/ checkpoints/best.ckpt test_metrics.json \
  predictions.csv confusion_matrix.png
