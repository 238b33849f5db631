#!/usr/bin/env bash
# Where does a training step's time go on the GPU, as a function of the number of Gaussians? One device call (≈ 4-6 min):
#
#   OUT=/path/for/logs bash benchmarks/speed/gpu_speed_probe.sh     (on the GPU machine, carrying .whl; OUT defaults to /tmp/probe)
#
# At the benchmark's geometry (box 64, 2 Å/px, batch 32; also batch 128) for G = 739 (preprocess --gaussian-interval 2),
# 2,500 (--max-gaussians 2500) and 5,850 (the default cloud of the adk preset): step ms, host-wait ms (near 0: the
# host's Python and launches bound the step, not the GPU), particles/s;
# a torch.profiler view of the default cloud (kernels per step, device-busy time, top kernels); then
# with --autotune (max-autotune, G = 5,850, at most AUTOTUNE_TIMEOUT=300 s; AUTOTUNE_TIMEOUT=0 skips it). Logs: $OUT/*.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/probe}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda} STEPS=${STEPS:-60} WARMUP=${WARMUP:-15}
mkdir -p "$OUT"
# shellcheck source=benchmarks/gpu/gpu_env.sh
. benchmarks/gpu/gpu_env.sh
gpu_env || echo "installing .whl/ failed" >&2
G=${GAUSSIANS:-"739 2500 5850"}
GA=${AUTOTUNE_GAUSSIANS:-5850}  # max-autotune compiles for minutes: one cloud size by default
# shellcheck disable=SC2086
"$PY" benchmarks/speed/train_throughput.py --device "$DEVICE" --box 64 --apix 2 --gaussians $G --batch-size 32 128 \
  --steps "$STEPS" --warmup "$WARMUP" 2>&1 | tee "$OUT/throughput.log"
"$PY" benchmarks/speed/profile_train_step.py --device "$DEVICE" --box 64 --apix 2 --gaussians 5850 --batch-size 32 --steps 20 \
  2>&1 | tee "$OUT/profile.log" | tail -n 45
# shellcheck disable=SC2086
[ "${AUTOTUNE_TIMEOUT:-300}" != 0 ] && timeout "${AUTOTUNE_TIMEOUT:-300}" "$PY" benchmarks/speed/train_throughput.py --device "$DEVICE" --box 64 --apix 2 --gaussians $GA --batch-size 32 --autotune \
  --steps "$STEPS" --warmup "$WARMUP" 2>&1 | tee "$OUT/throughput_autotune.log"
grep -h "^| " "$OUT/throughput.log" "$OUT/throughput_autotune.log"
