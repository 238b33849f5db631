#!/usr/bin/env bash
# Device call (issue 15, phase 3): where the new step's time goes at G = 60,000 once the geometric regularisers run
# on the control points (--regularise-on control), and the throughput rows with the regularisers on the Gaussians
# and on the control points.
#   OUT=out bash benchmarks/speed/gpu_issue15d.sh
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
TP=(python3 benchmarks/speed/train_throughput.py --device cuda --box 128 --apix 1.8 --steps 30 --warmup 6)
timeout "${T_PROF:-170}" python3 benchmarks/speed/profile_train_step.py --gaussians 60000 --box 128 --apix 1.8 \
    --decoder control --projector splat --regularise-on control --no-cudagraphs --steps 5 \
    > "$OUT/profile_60k_ctrl.txt" 2>&1
grep -E "throughput run|per step|alone" "$OUT/profile_60k_ctrl.txt"
stamp "profile"
timeout "${T_TP:-200}" "${TP[@]}" --batch-size 32 --gaussians 60000 --decoder control --projector splat \
    --regularise-on gaussians control > "$OUT/tp_60k.txt" 2>&1
tail -4 "$OUT/tp_60k.txt"
stamp "throughput 60k"
timeout "${T_TP2:-200}" "${TP[@]}" --batch-size 32 64 --gaussians 8000 30000 60000 --decoder control \
    --projector splat --regularise-on control > "$OUT/tp_sizes.txt" 2>&1
tail -8 "$OUT/tp_sizes.txt"
stamp "throughput sizes"
