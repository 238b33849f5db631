#!/usr/bin/env bash
# Device call (issue 15, session 9): the splat kernels' launch settings at the training step's sizes
# (splat_tune.py), then whole training steps at box 128 (1.8 Å/px, batch 32) with the fastest accurate setting
# ($GAUSSIANEM_SPLAT_KERNEL) for G = 60,000 / 30,000 / 8,000, and at G = 60,000 with the full-box encoder input and
# with the previous launch setting; cryoDRGN's training speed at box 128 in the same call (the ratio); the kernel
# tests on CUDA.
#   OUT=out bash benchmarks/speed/gpu_issue15h.sh
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
timeout "${T_TUNE:-150}" python3 benchmarks/speed/splat_tune.py --json "$OUT/splat_tune.json" \
    --blocks 32 64 --warps 2 4 --stages 0 2 --packed 1 0 > "$OUT/splat_tune.txt" 2>&1
grep -A40 "static slots" "$OUT/splat_tune.txt"
stamp "splat tune"
BEST=$(python3 - "$OUT/splat_tune.json" <<'PY'
import json, sys
try:
    rows = [r for r in json.load(open(sys.argv[1]))["rows"] if "error" not in r]
    ok = [r for r in rows if r["err_vs_dense"] < 1e-5 and r["grad_err_vs_dense"] < 1e-4]
    best = min(ok, key=lambda r: r["fwd_bwd_ms"])
    print(",".join(f"{k}={best[k]}" for k in ("block_g", "num_warps", "chunk", "precision", "stages", "packed")))
except Exception:
    print("")
PY
)
echo "fastest accurate launch setting: ${BEST:-none (the defaults)}"
echo "$BEST" > "$OUT/best_setting.txt"
TP=(python3 benchmarks/speed/train_throughput.py --device cuda --box 128 --apix 1.8 --steps 40 --warmup 6
    --batch-size 32)
run_tp() {  # name, G, then extra arguments
  local name=$1 g=$2; shift 2
  timeout "${T_TP:-80}" "${TP[@]}" --gaussians "$g" "$@" > "$OUT/tp_$name.txt" 2>&1
  echo "$name: $(grep -E "^\| *$g " "$OUT/tp_$name.txt" | head -1)"
}
export GAUSSIANEM_SPLAT_KERNEL=$BEST
run_tp 60k 60000
run_tp 30k 30000
run_tp 8k 8000
run_tp 60k_encfull 60000 --set encoder_box=0
GAUSSIANEM_SPLAT_KERNEL=precision=tf32x3,packed=0 run_tp 60k_oldkernel 60000
stamp "throughput"
unset GAUSSIANEM_SPLAT_KERNEL
RESULTS=$OUT/cryodrgn BOX=128 N_PARTICLES=${CRYO_N:-6000} EPOCHS=${CRYO_EPOCHS:-3} STEP_TIMEOUT=${T_CRYO:-110} \
    WORK=/tmp/cryo-speed timeout 130 bash benchmarks/speed/cryodrgn_speed.sh adk > "$OUT/cryodrgn.txt" 2>&1
tail -4 "$OUT/cryodrgn.txt"
stamp "cryodrgn"
timeout "${T_TESTS:-70}" python3 -m pytest -q -rs -p no:cacheprovider tests/test_splat.py \
    tests/test_control_decoder.py tests/test_model.py 2>&1 | tail -4 | tee "$OUT/tests_kernels.txt"
stamp "kernel tests"
