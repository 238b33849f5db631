#!/usr/bin/env bash
# One device call (issue 15, phase 2), in order of value, each part under its own time limit and writing under $OUT
# as it goes: the CUDA tests (splat kernels = reference, control decoder = reference, whole-step CUDA graph with the
# old and the new paths), cryoDRGN's training speed at box 128 (cryodrgn_speed.sh; .whl/ at the repository root or
# one level up), then train_throughput.py at box 128, batch 32: G = 60,000 with every decoder x projector pair, then
# G = 30,000 and 8,000 old (pair + dense) vs new (control + splat); last, the interpolation micro-benchmark.
#   OUT=out bash benchmarks/speed/gpu_issue15b.sh
# (The 2026-12-03 call ran its tests before gpu_env installed their dependencies: they were re-run by gpu_issue15c.sh.)
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
cuda_tests
TP="python3 benchmarks/speed/train_throughput.py --device cuda --box 128 --apix 1.8 --batch-size 32 --steps 30 --warmup 6"
timeout "${T_60K:-90}" $TP --gaussians 60000 --decoder control --projector splat 2>&1 | tee "$OUT/tp_60k_new.txt"
stamp "throughput 60k new"
timeout "${T_60K:-90}" $TP --gaussians 60000 --decoder pair --projector dense 2>&1 | tee "$OUT/tp_60k_old.txt"
stamp "throughput 60k old"
RESULTS=$OUT/cryodrgn BOX=128 N_PARTICLES=${CRYO_N:-6000} EPOCHS=${CRYO_EPOCHS:-3} STEP_TIMEOUT=${T_CRYO:-120} \
    WORK=/tmp/cryo-speed timeout 200 bash benchmarks/speed/cryodrgn_speed.sh adk 2>&1 | tee "$OUT/cryodrgn.txt"
stamp "cryodrgn"
timeout "${T_NEW:-100}" $TP --gaussians 30000 8000 --decoder control --projector splat 2>&1 | tee "$OUT/tp_new.txt"
stamp "throughput new 30k 8k"
timeout "${T_OLD:-100}" $TP --gaussians 30000 8000 --decoder pair --projector dense 2>&1 | tee "$OUT/tp_old.txt"
stamp "throughput old 30k 8k"
timeout "${T_MIX:-100}" $TP --gaussians 60000 --decoder control pair --projector dense splat 2>&1 | tee "$OUT/tp_60k_mixed.txt"
stamp "throughput 60k mixed"
timeout "${T_MICRO:-60}" python3 benchmarks/speed/decoder_projection.py --gaussians 60000 --skip-old-decoder \
    --skip-compiled --splat-configs 16x32x4x256 --json "$OUT/micro.json" 2>&1 | tee "$OUT/micro.txt"
stamp "micro"
