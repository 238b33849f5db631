#!/usr/bin/env bash
# Does the whole training step captured as one CUDA graph (train --step-graph) work, and what does it and TF32 buy?
# One device call (≈ 5 min), on the GPU machine, carrying .whl:
#
#   OUT=/path/for/logs bash benchmarks/speed/gpu_step_graph_check.sh
#
# 1. the CUDA test that compares the eager step, the tree-graph step and the whole-step graph (losses, weights
#    after AdamW under an lr schedule, memory bank);
# 2. train_throughput.py at the benchmark's geometry (box 64, 2 Å/px, batch BATCH=32) for G in GAUSSIANS
#    ("739 5850": the fast-mode and the default adk cloud): --no-step-graph (forward and backward as
#    torch.compile's CUDA graphs), --step-graph (the default), --step-graph --tf32.
# 3. profile_train_step.py --step-graph at G 5,850 (kernels and device-busy time per step).
# Logs: $OUT/test.log, $OUT/throughput.log, $OUT/profile.log; the tables are printed at the end.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/stepgraph}
PY=${PYTHON:-python3}
G=${GAUSSIANS:-"739 5850"}
BATCH=${BATCH:-32}
STEPS=${STEPS:-60} WARMUP=${WARMUP:-15}
mkdir -p "$OUT"
# shellcheck source=benchmarks/gpu/gpu_env.sh
. benchmarks/gpu/gpu_env.sh
gpu_env || echo "installing .whl/ failed" >&2
timeout 240 "$PY" -m pytest -q -x tests/test_train.py -k "cuda_graph_steps" -p no:cacheprovider 2>&1 \
  | tail -n 40 | tee "$OUT/test.log"
: >"$OUT/throughput.log"
for flags in "--no-step-graph" "--step-graph" "--step-graph --tf32"; do
  echo "## flags: $flags" | tee -a "$OUT/throughput.log"
  # shellcheck disable=SC2086
  timeout 200 "$PY" benchmarks/speed/train_throughput.py --device cuda --box 64 --apix 2 --gaussians $G \
    --batch-size $BATCH --steps "$STEPS" --warmup "$WARMUP" $flags 2>&1 | grep -v Warning >>"$OUT/throughput.log"
done
grep -h "^| \|^## " "$OUT/throughput.log"
grep -h -m1 -A30 "capture failed" "$OUT/throughput.log"
# 3. a torch.profiler view of the whole-step graph at the default cloud (PROFILE=0 skips it)
[ "${PROFILE:-1}" != 0 ] && timeout 150 "$PY" benchmarks/speed/profile_train_step.py --device cuda --box 64 --apix 2 \
  --gaussians 5850 --batch-size "$BATCH" --steps 20 --step-graph 2>&1 | grep -v Warning >"$OUT/profile.log" \
  && tail -n 4 "$OUT/profile.log"
