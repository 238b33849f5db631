#!/usr/bin/env bash
# Second device call (issue 15, phase 2): the CUDA tests with the test dependencies installed (.whl/ via gpu_env),
# the accuracy of the new paths against the old ones on the same particles (compare_cryodrgn.sh, adk, box 64,
# GaussianEM only; ~4 min per variant on an H200), then a profile of the new step at G = 60,000 (compiled, no CUDA
# graphs: kernels by name). Needs more than one 10-minute call: raise the T_* limits and run the parts in separate calls.
#   OUT=out bash benchmarks/speed/gpu_issue15c.sh
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
cuda_tests
for variant in new old; do
  if [ $variant = new ]; then args="--decoder control --projector auto"; else args="--decoder pair --projector dense"; fi
  RESULTS=$OUT/acc_$variant WORK=/tmp/acc_$variant TOOLS=gaussianem N_PARTICLES=${ACC_N:-8000} EPOCHS=${ACC_EPOCHS:-5} \
      GEM_TRAIN_ARGS="$args" timeout "${T_ACC:-300}" bash benchmarks/accuracy/compare_cryodrgn.sh adk \
      > "$OUT/acc_$variant.txt" 2>&1
  tail -5 "$OUT/acc_$variant.txt"
  stamp "accuracy $variant"
done
timeout "${T_PROF:-80}" python3 benchmarks/speed/profile_train_step.py --gaussians 60000 --box 128 --apix 1.8 \
    --decoder control --projector splat --no-cudagraphs --steps 5 2>&1 | tee "$OUT/profile_60k_new.txt"
stamp "profile"
