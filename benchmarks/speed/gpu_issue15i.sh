#!/usr/bin/env bash
# Device call (issue 15, session 9, the defaults' figures): the training-step rows at box 128 (1.8 Å/px, batch 32)
# for G = 60,000 / 30,000 / 8,000 with the defaults, each size alone; cryoDRGN's training speed at box 128 in the same
# call (the ratio); then the CUDA tests (kernel = reference, whole-step graph capture with the fast paths).
#   OUT=out bash benchmarks/speed/gpu_issue15i.sh
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
TP=(python3 benchmarks/speed/train_throughput.py --device cuda --box 128 --apix 1.8 --steps 40 --warmup 6
    --batch-size 32)
for g in 60000 30000 8000; do
  timeout "${T_TP:-90}" "${TP[@]}" --gaussians "$g" > "$OUT/tp_$g.txt" 2>&1
  grep -E "^\| *$g " "$OUT/tp_$g.txt" | head -1
done
stamp "throughput, defaults"
timeout "${T_TP:-90}" "${TP[@]}" --gaussians 60000 --set encoder_box=0 > "$OUT/tp_60000_encfull.txt" 2>&1
grep -E "^\| *60000 " "$OUT/tp_60000_encfull.txt" | head -1
stamp "throughput, full-box encoder"
RESULTS=$OUT/cryodrgn BOX=128 N_PARTICLES=${CRYO_N:-6000} EPOCHS=${CRYO_EPOCHS:-3} STEP_TIMEOUT=${T_CRYO:-120} \
    WORK=/tmp/cryo-speed timeout 150 bash benchmarks/speed/cryodrgn_speed.sh adk > "$OUT/cryodrgn.txt" 2>&1
tail -4 "$OUT/cryodrgn.txt"
stamp "cryodrgn"
cuda_tests
