#!/usr/bin/env bash
# Device call (issue 15): per-image FSC-AUC of the fast paths (--decoder control --projector auto) against the old
# ones (pair + dense) on the same simulated particles, the three presets at box 64, all six runs at once on one GPU
# (each its own simulate -> preprocess -> fit -> train -> benchmark; GaussianEM only). Default cloud (preprocess's
# budget rule), SNR 0.05, 20,000 particles, 5 epochs, fit 3 epochs.
#   OUT=out bash benchmarks/accuracy/gpu_issue15_accuracy.sh
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
for preset in adk tcr-compositional tcr-mixed; do
  for variant in new old; do
    if [ $variant = new ]; then args="--decoder control --projector auto"; else args="--decoder pair --projector dense"; fi
    RESULTS=$OUT/$preset-$variant WORK=/tmp/acc/$preset-$variant TOOLS=gaussianem N_PARTICLES=${ACC_N:-20000} \
        EPOCHS=${ACC_EPOCHS:-5} FIT_EPOCHS=3 SNR=0.05 STEP_TIMEOUT=400 GEM_TRAIN_ARGS="$args" \
        timeout "${T_ACC:-500}" bash benchmarks/accuracy/compare_cryodrgn.sh "$preset" \
        > "$OUT/$preset-$variant.txt" 2>&1 &
  done
done
wait
stamp "accuracy runs"
summarise_runs /tmp/acc "$OUT"/*-new "$OUT"/*-old
