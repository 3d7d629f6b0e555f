#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one run of under 8 minutes on one H100/H200, random-init
# models of the real configs (no hub access needed), bf16, batch 8 of 5 s crops:
#   compare-MODEL  train_throughput.py ours vs the HF recipe: train audio-s/s, predict vs the HF
#            pipeline, TFLOP/s and MFU, for wav2vec2-base, AST-base and wav2vec2-large (the
#            large-model row), with --profile: where a step's time goes, ours next to HF, and the
#            host syncs torch reports
#   buckets  ours again with 0.5 s length buckets (data.loader.length_bucket_seconds)
#   compile  ours with the backbone's torch.compile (warm-up steps pay the compilation)
#   gpu-tests  the tests marked gpu (a CLI fit in bf16-mixed and 16-mixed on the GPU)
# Each run's tables go to $LOGDIR/tables.md and its full output to <name>.log inside
# $LOGDIR/logs.tar, rewritten after every run (the device tool brings back at most 8 files from
# $OUT: three come back, tables.md, gpu.txt and logs.tar, whatever is cut); a run that outlives
# its share of the time is cut, not the rest.
#   bash benchmarks/gpu_suite.sh [LOGDIR] [STEPS]      (LOGDIR default: $OUT, else gpu_logs)
# On a machine that reaches no package index and whose Python holds torch, the wheels ser needs
# besides it travel in .whl/ (benchmarks/gpu_wheels.py writes them; WHEELS names another folder):
# pip picks from them what that Python lacks or holds too old, into a folder of this run put first
# on PYTHONPATH, that Python left as it is (install.log).
# A dry run on CPU (tiny model, 2 steps, a few files; minutes on 2 cores, most of them compiling)
# checks the script itself:
#   SUITE_DRY_RUN=1 bash benchmarks/gpu_suite.sh /tmp/suite
set -u
LOGDIR=${1:-${OUT:-gpu_logs}}
STEPS=${2:-30}
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's ser, in subprocesses too
mkdir -p "$LOGDIR"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LOGS="$WORK/logs"  # packed into $LOGDIR/logs.tar by pack_logs
mkdir -p "$LOGS"
pack_logs() { tar -C "$LOGS" -cf "$LOGDIR/logs.tar" .; }
WHEELS=${WHEELS:-.whl}
if [ -d "$WHEELS" ]; then
  pip=("$PY" -m pip install --no-index --find-links "$WHEELS" --disable-pip-version-check)
  { "${pip[@]}" --dry-run --quiet --report "$WORK/install.json" -r "$WHEELS/requirements.txt" &&
    "$PY" -c 'import json, sys, urllib.parse, urllib.request
for item in json.load(open(sys.argv[1]))["install"]:
    print(urllib.request.url2pathname(urllib.parse.urlparse(item["download_info"]["url"]).path))' \
      "$WORK/install.json" >"$WORK/picked.txt" && mapfile -t picked <"$WORK/picked.txt" &&
    echo "from $WHEELS: ${picked[*]##*/}" &&
    { [ ${#picked[@]} = 0 ] || "${pip[@]}" --quiet --no-deps --target "$WORK/site" "${picked[@]}"; }
  } >"$LOGS/install.log" 2>&1 || {
    cat "$LOGS/install.log"; pack_logs; echo "installing from $WHEELS failed"; exit 1; }
  pack_logs
  export PYTHONPATH="$WORK/site:$PYTHONPATH"
fi
if [ "${SUITE_DRY_RUN:-0}" = 1 ]; then
  COMPARE=(tiny) MODELS=tiny LIMITS=(240 120 400 300)  # inductor on a 2-core CPU takes minutes
  common=(--device cpu --steps 2 --warmup 1 --num-files 30 --workers 0 --predict-files 2)
  profile=(--profile 1) compile_warmup=(--warmup 1)
else
  COMPARE=(wav2vec2-base ast-base wav2vec2-large) MODELS=wav2vec2-base,ast-base
  LIMITS=(95 60 85 45)  # seconds: each compare run, buckets, compile, gpu-tests (475 s at most)
  # 3 warm-up steps: the allocator's growth and first kernel choices stay out of the timed steps;
  # 600 files: no epoch starts inside the 43 trained steps on either side (ours trains on 80 %)
  common=(--device cuda --steps "$STEPS" --warmup 3 --predict-files 24 --num-files 600)
  profile=(--profile 5) compile_warmup=(--warmup 10)
fi
common+=(--precision bf16 --flops --attn sdpa --workdir "$WORK")
run() {  # name, seconds, command...: its output to <name>.log (logs.tar), its tables to tables.md
  local name=$1 limit=$2 start=$SECONDS; shift 2
  echo "=== $name: $*" | tee "$LOGS/$name.log"
  PYTHONUNBUFFERED=1 timeout -k 10 "$limit" "$@" >>"$LOGS/$name.log" 2>&1
  echo "exit $? after $((SECONDS - start)) s (limit ${limit} s)" >>"$LOGS/$name.log"
  { echo "## $name"; grep -E "$TABLE_LINES" "$LOGS/$name.log"; echo; } | tee -a "$LOGDIR/tables.md"
  pack_logs
}
# throughput tables, profile lines and host syncs of train_throughput.py; pytest's summary
TABLE_LINES='^(\||\[|  (fit|predict|host|profile)|    [0-9>]|        (step|compute|torch|epoch)|Where|Work|exit|failed|FAILED|ERROR|[0-9]+ (passed|failed|skipped|errors?))'
throughput=("$PY" benchmarks/train_throughput.py "${common[@]}")
: >"$LOGDIR/tables.md"
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch, transformers, lightning; print(torch.__version__, transformers.__version__, lightning.__version__)"
} | tee "$LOGDIR/gpu.txt"
for model in "${COMPARE[@]}"; do  # one run per model: a run cut short loses only its own tables
  run "compare-$model" "${LIMITS[0]}" "${throughput[@]}" --models "$model" "${profile[@]}"
done
# Training only (--predict-files 0): predict is the compare runs' (in compile, eval mode would
# compile new graphs inside the run's share of the time).
run buckets "${LIMITS[1]}" "${throughput[@]}" --models "$MODELS" --sides ours \
  --length-bucket-seconds 0.5 --predict-files 0
run compile "${LIMITS[2]}" "${throughput[@]}" --models "$MODELS" --sides ours --compile \
  "${compile_warmup[@]}" --predict-files 0
# No plugins but pytest's own: whatever the image holds (a stale xdist, a timeout) stays out.
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 run gpu-tests "${LIMITS[3]}" "$PY" -m pytest -q \
  -p no:cacheprovider -m gpu tests/test_precision.py
