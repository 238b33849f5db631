#!/usr/bin/env bash
# Second device call (issue 15, phase 2): the CUDA tests with the test dependencies installed (.whl/ via gpu_env),
# the accuracy of the new paths against the old ones on the same particles (compare_cryodrgn.sh, adk, box 64,
# GaussianEM only; ~4 min per variant on an H200), then a profile of the new step at G = 60,000 (compiled, no CUDA
# graphs: kernels by name). Needs more than one 10-minute call: raise the T_* limits and run the parts in separate calls.
#   OUT=out bash benchmarks/speed/gpu_issue15c.sh
set -o pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor-15b}
start=$(date +%s)
stamp() { echo "== $1: $(( $(date +%s) - start )) s"; }
[ -d .whl ] || { [ -d ../.whl ] && ln -s ../.whl .whl; }
ROOT=$PWD
# shellcheck source=benchmarks/gpu/gpu_env.sh
. benchmarks/gpu/gpu_env.sh
gpu_env || echo "installing .whl/ failed" >&2
stamp "gpu_env"
timeout "${T_TESTS:-100}" python3 -m pytest -q -rs -p no:cacheprovider tests/test_splat.py tests/test_control_decoder.py \
    2>&1 | tee "$OUT/tests_kernels.txt"
stamp "kernel tests"
timeout "${T_GRAPH:-150}" python3 -m pytest -q -rs -p no:cacheprovider tests/test_train.py \
    -k "control_decoder_and_splat or cuda_graph_steps_match" 2>&1 | tee "$OUT/tests_graph.txt"
stamp "graph tests"
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
