#!/usr/bin/env bash
# Device call (issue 15): per-image FSC-AUC at box 128 (1.8 Å/px) of the defaults, of the old paths (pair decoder,
# dense projector, full-box encoder input), on the same simulated particles, 20 epochs; adk and tcr-compositional,
# the pipelines at once on one GPU (each simulates the same particles: same preset, seed and sizes).
# NEW_TOOLS="gaussianem cryodrgn" adds cryoDRGN to the new pipelines; with it the four pipelines did not finish in
# 500 s on an H200 (cryoDRGN's eval_vol of the scored volumes at box 128 comes last), so it is off by default.
#   OUT=out bash benchmarks/accuracy/gpu_issue15_box128.sh
# PRESETS="adk tcr-compositional" and OLD=1 (0: the defaults alone) pick the pipelines. PARALLEL_TOOLS=1 runs
# GaussianEM and cryoDRGN of a preset at once (compare_cryodrgn.sh); GRAPH_TESTS="-k expression" runs those
# whole-step CUDA-graph tests of tests/test_train.py beside the pipelines (to $OUT/tests_graph.txt).
#   One call for both presets and both tools at box 128 (session 11):
#   OUT=$OUT PRESETS="adk tcr-compositional" OLD=0 NEW_TOOLS="gaussianem cryodrgn" PARALLEL_TOOLS=1 ACC_IMAGES=100 \
#       T_ACC=530 bash benchmarks/accuracy/gpu_issue15_box128.sh
# Sizes (environment): ACC_N=8000 particles, ACC_EPOCHS=20, ACC_IMAGES=200 scored images, T_ACC=540 s per pipeline.
# Train wall times come from runs sharing the GPU (four at once): the steady-state particles/s of each is in its
# metrics table; the speed rows of the same code alone are benchmarks/speed/gpu_issue15i.sh's.
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
common=(BOX=128 "SIM_ARGS=--apix 1.8" N_PARTICLES="${ACC_N:-8000}" EPOCHS="${ACC_EPOCHS:-20}" FIT_EPOCHS=3 SNR=0.05
        N_IMAGES="${ACC_IMAGES:-200}" STEP_TIMEOUT=480)
if [ -n "${GRAPH_TESTS:-}" ]; then
  # shellcheck disable=SC2086
  timeout "${T_GRAPH:-300}" python3 -m pytest -q -rs -p no:cacheprovider tests/test_train.py $GRAPH_TESTS \
      > "$OUT/tests_graph.txt" 2>&1 &
fi
for preset in ${PRESETS:-adk tcr-compositional}; do
  env "${common[@]}" RESULTS="$OUT/$preset-new" WORK="/tmp/acc/$preset-new" TOOLS="${NEW_TOOLS:-gaussianem}" \
      timeout "${T_ACC:-540}" bash benchmarks/accuracy/compare_cryodrgn.sh "$preset" > "$OUT/$preset-new.txt" 2>&1 &
  [ "${OLD:-1}" = 1 ] && env "${common[@]}" RESULTS="$OUT/$preset-old" WORK="/tmp/acc/$preset-old" TOOLS=gaussianem \
      GEM_TRAIN_ARGS="--decoder pair --projector dense --encoder-box 0" \
      timeout "${T_ACC:-540}" bash benchmarks/accuracy/compare_cryodrgn.sh "$preset" > "$OUT/$preset-old.txt" 2>&1 &
done
wait
stamp "accuracy runs"
summarise_runs /tmp/acc "$OUT"/*-new $(ls -d "$OUT"/*-old 2>/dev/null) | tee "$OUT/summary.md"
