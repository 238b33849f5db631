#!/usr/bin/env bash
# Several training variants on the same simulated data, each scored by analysis_acceptance.py and `benchmark`:
#
#   PRESET=adk SNR=0.1 EPOCHS=15 bash benchmarks/accuracy/train_variants.sh "NAME:TRAIN FLAGS" ["NAME:TRAIN FLAGS" ...]
#   e.g. bash benchmarks/accuracy/train_variants.sh "base:" "d1e-3:--distance-weight 1e-3"
#
# Once: simulate (N_PARTICLES, BOX, SNR, SEED), preprocess, fit (FIT_EPOCHS) under $WORK. Per variant: train with
# the flags, `analysis_acceptance.py` (PC1 ends, warp, displacement diagnostics; adk) and `gaussianem benchmark`
# (per-image FSC-AUC); JSON and the training log of each go to $RESULTS/variants/NAME.*. One summary line per
# variant on stdout and in $RESULTS/variants/summary.tsv. Environment as in compare_cryodrgn.sh (WORK, RESULTS,
# DEVICE, N_PARTICLES, BOX, SNR, EPOCHS, BATCH, ZDIM, FIT_EPOCHS, SEED, STEP_TIMEOUT, PYTHON; SIM_ARGS and
# PREPROCESS_ARGS: extra flags of simulate and preprocess, e.g. PREPROCESS_ARGS="--box 32" for a CPU screen).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PRESET=${PRESET:-adk}
N_PARTICLES=${N_PARTICLES:-20000}
BOX=${BOX:-64}
SNR=${SNR:-0.1}
EPOCHS=${EPOCHS:-15}
BATCH=${BATCH:-32}
ZDIM=${ZDIM:-10}
FIT_EPOCHS=${FIT_EPOCHS:-3}
SEED=${SEED:-0}
WORK=${WORK:-/tmp/gaussianem-variants}
RESULTS=${RESULTS:-benchmarks/results}
DEVICE=${DEVICE:-cuda}
STEP_TIMEOUT=${STEP_TIMEOUT:-0}
PY=${PYTHON:-python3}
[ $# -eq 0 ] && { echo "usage: $0 NAME:FLAGS [NAME:FLAGS ...]" >&2; exit 2; }
mkdir -p "$WORK" "$RESULTS/variants"
OUTD=$(cd "$RESULTS/variants" && pwd)
# shellcheck source=benchmarks/gpu/gpu_env.sh
. "$ROOT/benchmarks/gpu/gpu_env.sh"
gpu_env || echo "installing .whl/ failed" >&2
run() {  # run NAME LOG CMD...: timed, output kept in LOG
  local name=$1 out=$2 t0 rc
  shift 2
  t0=$(date +%s)
  if [ "$STEP_TIMEOUT" -gt 0 ]; then timeout --kill-after=15 "$STEP_TIMEOUT" "$@" >"$out" 2>&1; else "$@" >"$out" 2>&1; fi
  rc=$?
  echo "[$(date +%H:%M:%S)] $name: exit $rc in $(( $(date +%s) - t0 )) s" >&2
  [ $rc -ne 0 ] && tail -n 12 "$out" >&2
  return $rc
}
W=$WORK/$PRESET
if [ ! -f "$W/dataset/gaussians.ply" ]; then
  rm -rf "$W"; mkdir -p "$W"
  run simulate "$W/simulate.log" "$PY" -m gaussianem simulate --preset "$PRESET" -o "$W/sim" \
      --n-particles "$N_PARTICLES" --box "$BOX" --snr "$SNR" --seed "$SEED" --device "$DEVICE" ${SIM_ARGS:-} || exit 1
  run preprocess "$W/preprocess.log" "$PY" -m gaussianem preprocess "$W/sim/particles.star" \
      --map "$W/sim/consensus.mrc" -o "$W/dataset" --device "$DEVICE" ${PREPROCESS_ARGS:-} || exit 1
  run fit "$W/fit.log" "$PY" -m gaussianem fit "$W/dataset" --epochs "$FIT_EPOCHS" --batch-size "$BATCH" \
      --device "$DEVICE" --no-progress || exit 1
fi
printf 'variant\tflags\ttrain_s\tpc1_rho\tpc1_ends_ok\twarp_before\twarp_after\tdisp_slope\tdisp_cos\tamp_change\tper_image_fsc_auc\n' \
    >"$OUTD/summary.tsv"
for V in "$@"; do
  NAME=${V%%:*}
  FLAGS=${V#*:}
  R=$W/run_$NAME
  t0=$(date +%s)
  # shellcheck disable=SC2086
  run "$NAME train" "$OUTD/$NAME.train.log" "$PY" -m gaussianem train "$W/dataset" -o "$R" --overwrite \
      --epochs "$EPOCHS" --batch-size "$BATCH" --zdim "$ZDIM" --seed "$SEED" --device "$DEVICE" --no-progress \
      $FLAGS || continue
  TS=$(( $(date +%s) - t0 ))
  cp "$R/log.jsonl" "$OUTD/$NAME.log.jsonl"
  run "$NAME acceptance" "$OUTD/$NAME.acceptance.log" "$PY" benchmarks/accuracy/analysis_acceptance.py --run "$R" \
      --sim "$W/sim" --json "$OUTD/$NAME.acceptance.json"
  run "$NAME benchmark" "$OUTD/$NAME.benchmark.log" "$PY" -m gaussianem benchmark "$R" --truth "$W/sim" \
      -o "$W/bench_$NAME" --n-images 1000 --seed "$SEED" --device "$DEVICE" \
    && cp "$W/bench_$NAME/metrics.json" "$OUTD/$NAME.metrics.json"
  "$PY" - "$NAME" "$FLAGS" "$TS" "$OUTD" <<'EOF' | tee -a "$OUTD/summary.tsv"
import json, sys
from pathlib import Path
name, flags, ts, d = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
def load(p):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
acc = load(d / f"{name}.acceptance.json").get("trajectory", {})
w, disp = acc.get("warp", {}), acc.get("displacement", {})
met = load(d / f"{name}.metrics.json")
res = met.get("results") or [{}]
auc = (res[0].get("per_image_fsc_auc") or {}).get("mean", "")
f = lambda v: "" if v in ("", None) else (f"{v:.3f}" if isinstance(v, float) else str(v))
print("\t".join([name, flags, ts, f(acc.get("spearman_pc1_vs_coordinate")), f(acc.get("pc1_ends_match_own_gt_end")),
                 f(w.get("ca_rmsd_closed_vs_open_superposed")), f(w.get("ca_rmsd_warped_vs_open_superposed")),
                 f(disp.get("regression_slope_model_on_true")), f(disp.get("cosine_model_true")),
                 f(disp.get("mean_abs_amplitude_change_over_mean_amplitude")), f(auc)]))
EOF
done
