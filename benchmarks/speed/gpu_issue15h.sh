#!/usr/bin/env bash
# Device call (issue 15, session 9, exploration): the splat kernels' launch settings at the training step's sizes
# (splat_tune.py), then whole training steps at G = 60,000, box 128, batch 32 with the encoder's input at 64² (the
# new default) or the full box, and with the fastest accurate launch setting; the CUDA tests; a profile.
#   OUT=out bash benchmarks/speed/gpu_issue15h.sh
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
timeout "${T_TUNE:-200}" python3 benchmarks/speed/splat_tune.py --json "$OUT/splat_tune.json" \
    > "$OUT/splat_tune.txt" 2>&1
grep -A60 "static slots" "$OUT/splat_tune.txt" | head -45
stamp "splat tune"
BEST=$(python3 - "$OUT/splat_tune.json" <<'PY'
import json, sys
rows = [r for r in json.load(open(sys.argv[1]))["rows"] if "error" not in r]
ok = [r for r in rows if r["err_vs_dense"] < 1e-5 and r["grad_err_vs_dense"] < 1e-4]
best = min(ok, key=lambda r: r["fwd_bwd_ms"])
print(",".join(f"{k}={best[k]}" for k in ("block_g", "num_warps", "chunk", "precision", "stages")))
PY
)
echo "fastest accurate launch setting: $BEST"
TP=(python3 benchmarks/speed/train_throughput.py --device cuda --box 128 --apix 1.8 --steps 30 --warmup 6
    --batch-size 32 --gaussians 60000)
run_tp() {  # name, then extra arguments
  local name=$1; shift
  timeout "${T_TP:-90}" "${TP[@]}" "$@" > "$OUT/tp_$name.txt" 2>&1
  echo "$name: $(grep -E '^\| *60000 ' "$OUT/tp_$name.txt" | head -1)"
}
run_tp enc64
run_tp encfull --set encoder_box=0
GAUSSIANEM_SPLAT_KERNEL=$BEST run_tp enc64_best
GAUSSIANEM_SPLAT_KERNEL=$BEST run_tp enc64_best_tf32 --tf32
stamp "throughput variants"
cuda_tests_quick() {
  timeout "${T_TESTS:-100}" python3 -m pytest -q -rs -p no:cacheprovider tests/test_splat.py \
      tests/test_control_decoder.py tests/test_model.py 2>&1 | tail -4 | tee "$OUT/tests_kernels.txt"
  stamp "kernel tests"
}
cuda_tests_quick
GAUSSIANEM_SPLAT_KERNEL=$BEST timeout "${T_PROF:-90}" python3 benchmarks/speed/profile_train_step.py \
    --gaussians 60000 --box 128 --apix 1.8 --decoder control --projector splat --no-cudagraphs --steps 5 \
    > "$OUT/profile_60k.txt" 2>&1
grep -E "throughput run|per step|alone" "$OUT/profile_60k.txt"
stamp "profile"
