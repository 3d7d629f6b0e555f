#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one run: train_throughput.py (ours vs the HF recipe)
# on one GPU, bf16 with SDPA, bf16 with eager attention, then bf16 + SDPA + torch.compile. Each
# run's full output goes to $LOGDIR/<name>.log; a run that outlives its share of the time is cut,
# not the rest.
#   bash benchmarks/gpu_suite.sh [LOGDIR] [STEPS]
set -u
LOGDIR=${1:-gpu_logs}
STEPS=${2:-30}
PY=${PY:-python3}
mkdir -p "$LOGDIR"
WORK=$(mktemp -d)
common=(--device cuda --precision bf16 --flops --models wav2vec2-base,ast-base --steps "$STEPS"
  --predict-files 24 --workdir "$WORK")
run() {  # name, seconds, extra args...
  local name=$1 limit=$2; shift 2
  echo "=== $name: ${common[*]} $*"
  PYTHONUNBUFFERED=1 timeout "$limit" "$PY" benchmarks/train_throughput.py "${common[@]}" "$@" \
    2>&1 | tee "$LOGDIR/$name.log" | grep -vE "Warning|warn\(" | tail -40
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOGDIR/gpu.txt"
"$PY" -c "import torch, transformers, lightning; print(torch.__version__, transformers.__version__, lightning.__version__)" | tee -a "$LOGDIR/gpu.txt"
run sdpa 180 --attn sdpa
run eager 130 --attn eager
run compile 180 --attn sdpa --compile --warmup 10
