#!/usr/bin/env bash
# Device call (issue 15, phase 5, the final code of 2026-12-03): the kernel = reference tests on CUDA, the throughput
# rows of the defaults (now --decoder control --projector auto) at box 128, batch 32, G = 60,000 / 30,000 / 8,000,
# and cryoDRGN's training speed at box 128 in the same call (the ratio).
#   OUT=out bash benchmarks/speed/gpu_issue15g.sh
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
timeout "${T_TESTS:-100}" python3 -m pytest -q -rs -p no:cacheprovider tests/test_splat.py \
    tests/test_control_decoder.py 2>&1 | tail -3 | tee "$OUT/tests_kernels.txt"
stamp "kernel tests"
timeout "${T_TP:-200}" python3 benchmarks/speed/train_throughput.py --device cuda --box 128 --apix 1.8 --steps 30 \
    --warmup 6 --batch-size 32 --gaussians 60000 30000 8000 > "$OUT/tp_defaults.txt" 2>&1
tail -5 "$OUT/tp_defaults.txt"
stamp "throughput, defaults"
RESULTS=$OUT/cryodrgn BOX=128 N_PARTICLES=${CRYO_N:-6000} EPOCHS=${CRYO_EPOCHS:-3} STEP_TIMEOUT=${T_CRYO:-120} \
    WORK=/tmp/cryo-speed timeout 150 bash benchmarks/speed/cryodrgn_speed.sh adk > "$OUT/cryodrgn.txt" 2>&1
tail -6 "$OUT/cryodrgn.txt"
stamp "cryodrgn"
