#!/usr/bin/env bash
# Device call (issue 15, the defaults' tests and figures): the CUDA tests first (kernel = reference, then the
# whole-step CUDA-graph tests with the fast paths, 150 s for their compilation), then the training-step row at box
# 128 (1.8 Å/px, batch 32) for G = 60,000 with the defaults and cryoDRGN's training speed at box 128 in the same
# call (the ratio). About 7 minutes on an H200.
#   OUT=out bash benchmarks/speed/gpu_issue15i.sh
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
cuda_tests
TP=(python3 benchmarks/speed/train_throughput.py --device cuda --box 128 --apix 1.8 --steps 40 --warmup 6
    --batch-size 32)
for g in ${SIZES:-60000}; do
  timeout "${T_TP:-90}" "${TP[@]}" --gaussians "$g" > "$OUT/tp_$g.txt" 2>&1
  grep -E "^\| *$g " "$OUT/tp_$g.txt" | head -1
done
stamp "throughput, defaults"
RESULTS=$OUT/cryodrgn BOX=128 N_PARTICLES=${CRYO_N:-6000} EPOCHS=${CRYO_EPOCHS:-3} STEP_TIMEOUT=${T_CRYO:-110} \
    WORK=/tmp/cryo-speed timeout 130 bash benchmarks/speed/cryodrgn_speed.sh adk > "$OUT/cryodrgn.txt" 2>&1
tail -4 "$OUT/cryodrgn.txt"
stamp "cryodrgn"
