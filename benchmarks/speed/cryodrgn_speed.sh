#!/usr/bin/env bash
# cryoDRGN's training speed alone, on the benchmark's particles: no volumes, no scoring (those are
# compare_cryodrgn.sh's). Per preset: gaussianem simulate (the same particles as compare_cryodrgn.sh: same preset,
# N_PARTICLES, BOX, SNR, SEED), cryodrgn parse_star, cryodrgn train_vae (EPOCHS, BATCH, ZDIM, --no-analysis); then a
# table of each epoch's seconds as train_vae logs them and the particles/s over all epochs and in steady state (the
# epochs after the first), computed as collect_results.py computes them for the side-by-side table.
#
#   RESULTS=$OUT bash benchmarks/speed/cryodrgn_speed.sh [PRESET ...]      (default: adk tcr-compositional tcr-mixed)
#
# ≈ 75 s per preset on an H200 (5 epochs of 20,000 particles). Settings (environment) as compare_cryodrgn.sh:
# N_PARTICLES=20000 BOX=64 SNR=0.05 EPOCHS=5 BATCH=32 ZDIM=10 SEED=0 WORK=/tmp/gaussianem-bench-speed
# RESULTS=benchmarks/results DEVICE=cuda STEP_TIMEOUT=0 (seconds per command, 0 = none) PYTHON=python3.
# Writes $RESULTS/cryodrgn_speed.tsv (a row per preset) and $RESULTS/PRESET.cryodrgn.log (train_vae's log).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N_PARTICLES=${N_PARTICLES:-20000} BOX=${BOX:-64} SNR=${SNR:-0.05} EPOCHS=${EPOCHS:-5} BATCH=${BATCH:-32}
ZDIM=${ZDIM:-10} SEED=${SEED:-0} WORK=${WORK:-/tmp/gaussianem-bench-speed} RESULTS=${RESULTS:-benchmarks/results}
DEVICE=${DEVICE:-cuda} STEP_TIMEOUT=${STEP_TIMEOUT:-0}
PY=${PYTHON:-python3}
PRESETS=("$@")
[ ${#PRESETS[@]} -eq 0 ] && PRESETS=(adk tcr-compositional tcr-mixed)
mkdir -p "$WORK" "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
# shellcheck source=benchmarks/gpu/gpu_env.sh
. "$ROOT/benchmarks/gpu/gpu_env.sh"
gpu_env || echo "installing .whl/ failed" >&2
export -f gem cryodrgn
export PY CRYODRGN_RUNNER
limit() { if [ "$STEP_TIMEOUT" -gt 0 ] 2>/dev/null; then timeout "$STEP_TIMEOUT" "$@"; else "$@"; fi; }
TSV=$RESULTS/cryodrgn_speed.tsv
FAILED=0
for P in "${PRESETS[@]}"; do
  W=$WORK/$P
  rm -rf "$W"
  mkdir -p "$W"
  LOG=$RESULTS/$P.cryodrgn.log
  if ! limit bash -c 'gem "$@"' gem simulate --preset "$P" -o "$W/sim" --n-particles "$N_PARTICLES" --box "$BOX" \
      --snr "$SNR" --seed "$SEED" --device "$DEVICE" >"$W/simulate.log" 2>&1; then
    echo "$P: simulate failed (see $W/simulate.log)" >&2; FAILED=1; continue
  fi
  if ! limit bash -c 'cryodrgn "$@"' cryodrgn parse_star "$W/sim/particles.star" --ctf "$W/ctf.pkl" \
      --poses "$W/pose.pkl" >"$W/parse_star.log" 2>&1; then
    echo "$P: parse_star failed (see $W/parse_star.log)" >&2; FAILED=1; continue
  fi
  T0=$(date +%s.%N)
  # the simulator's stack is white (RELION's convention): cryoDRGN's default sign inversion is the right one
  limit bash -c 'cryodrgn "$@"' cryodrgn train_vae "$W/sim/particles.mrcs" --poses "$W/pose.pkl" --ctf "$W/ctf.pkl" \
    --zdim "$ZDIM" -n "$EPOCHS" -b "$BATCH" --seed "$SEED" -o "$W/train" --no-analysis >"$LOG" 2>&1
  RC=$?
  WALL=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
  [ $RC -ne 0 ] && { echo "$P: train_vae failed (rc $RC, see $LOG)" >&2; FAILED=1; }
  PYTHONPATH="$PWD/benchmarks/accuracy${PYTHONPATH:+:$PYTHONPATH}" \
    "$PY" - "$P" "$LOG" "$((N_PARTICLES * EPOCHS))" "$WALL" "$RC" "$TSV" "$DEVICE" <<'PYEOF'
import datetime, os, sys
from collect_results import epoch_seconds, loop_rates
preset, log, pe, wall, rc, tsv, device = sys.argv[1:]
try:
    import torch
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
except Exception:
    name = "unknown"
epochs = epoch_seconds("cryodrgn", log) or []
rates = loop_rates(epochs, float(pe))
cols = ["preset", "tool", "rc", "wall_s", "epoch_seconds", "loop_particles_per_second",
        "steady_particles_per_second", "device", "date"]
row = [preset, "cryodrgn", rc, wall, " ".join(f"{e:.2f}" for e in epochs),
       f"{rates.get('loop_particles_per_second', float('nan')):.1f}",
       f"{rates.get('steady_particles_per_second', float('nan')):.1f}", name, datetime.date.today().isoformat()]
new = not os.path.exists(tsv)
with open(tsv, "a") as f:
    if new:
        f.write("\t".join(cols) + "\n")
    f.write("\t".join(map(str, row)) + "\n")
print("\t".join(map(str, row)))
PYEOF
done
column -t -s $'\t' "$TSV" 2>/dev/null || cat "$TSV"
exit $FAILED
