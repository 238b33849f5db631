#!/usr/bin/env bash
# Device call (issue 15, phase 4): the throughput rows of the fast paths after the regularisers moved to the control
# points, the Gaussian encoder to the control points (--control-embedding control), the elementwise projection of
# the centres and the 16-bit binning keys; then the CUDA tests (kernel = reference, whole-step graph capture).
#   OUT=out bash benchmarks/speed/gpu_issue15e.sh
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
TP=(python3 benchmarks/speed/train_throughput.py --device cuda --box 128 --apix 1.8 --steps 30 --warmup 6)
timeout "${T_TP:-240}" "${TP[@]}" --batch-size 32 --gaussians 60000 30000 8000 --decoder control \
    --projector splat > "$OUT/tp_sizes.txt" 2>&1
tail -5 "$OUT/tp_sizes.txt"
stamp "throughput sizes"
timeout "${T_TP2:-100}" "${TP[@]}" --batch-size 32 --gaussians 60000 --decoder control --projector splat \
    --set control_embedding=gaussians > "$OUT/tp_60k_gauss_embed.txt" 2>&1
tail -3 "$OUT/tp_60k_gauss_embed.txt"
stamp "throughput 60k, Gaussian embeddings"
cuda_tests
timeout "${T_PROF:-120}" python3 benchmarks/speed/profile_train_step.py --gaussians 60000 --box 128 --apix 1.8 \
    --decoder control --projector splat --no-cudagraphs --steps 5 > "$OUT/profile_60k.txt" 2>&1
grep -E "throughput run|per step|alone" "$OUT/profile_60k.txt"
stamp "profile"
