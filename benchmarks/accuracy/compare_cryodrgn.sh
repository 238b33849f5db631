#!/usr/bin/env bash
# GaussianEM vs cryoDRGN side by side, on one GPU, on the same simulated particles: one results row per preset x tool.
#
#   bash benchmarks/accuracy/compare_cryodrgn.sh [PRESET ...]        (default: adk tcr-compositional tcr-mixed)
#
# Per preset, under $WORK/PRESET/ (big files) and $RESULTS/ (small files):
#   1. gaussianem simulate --preset P  (N_PARTICLES, box BOX, SNR)          -> sim/ (star, mrcs, truth, volumes)
#   2. gaussianem preprocess + fit                                            -> dataset/
#   3. gaussianem train (EPOCHS, BATCH, ZDIM), timed                          -> gaussianem/
#   4. cryodrgn parse_star; cryodrgn train_vae on the same stack (same EPOCHS, BATCH, ZDIM), timed -> cryodrgn/
#   5. gaussianem benchmark --write-eval-z, cryodrgn eval_vol at those z     -> cryodrgn/eval/{particles,states}/
#   6. gaussianem benchmark: both tools scored by the same code               -> bench/metrics.{md,json}
#   7. rows appended to $RESULTS/results.tsv and $RESULTS/results.jsonl; the table copied to $RESULTS/P.metrics.md
# Every step is logged with its wall time to $RESULTS/bench.log; a failed step skips what depends on it and the
# script goes on (to the other tool, then to the next preset). Exit status: 0 when every row was produced.
#
# Settings (environment): N_PARTICLES=20000 BOX=64 SNR=0.05 EPOCHS=5 BATCH=32 ZDIM=10 N_IMAGES=1000 FIT_EPOCHS=2
#   SEED=0 TOOLS="gaussianem cryodrgn" WORK=/tmp/gaussianem-bench RESULTS=benchmarks/results DEVICE=cuda
#   SIM_ARGS / GEM_PREPROCESS_ARGS / GEM_FIT_ARGS / GEM_TRAIN_ARGS / CRYODRGN_TRAIN_ARGS: extra flags for simulate,
#   GaussianEM's preprocess (e.g. "--gaussian-interval 2": ~8x fewer Gaussians, or "--max-gaussians 2500"), its fit
#   (e.g. "--densify") and the two training commands;
#   PARALLEL_TOOLS=1 runs the two tools of a preset at once (after simulate; their train times then share the GPU);
#   STEP_TIMEOUT=S stops any one step after S seconds (0 = never), so one stuck tool cannot eat the whole call;
#   INSTALL_WHEELS=0 skips installing .whl/ (a machine that has the packages); PYTHON=python3 picks the interpreter.
# Sizing (the GPU budget is ~15 min for all three presets and both tools, one 10-minute call at most per preset):
#   at box 64 cryoDRGN's default 3x1024 decoder costs ~66 GFLOP per image (fwd+bwd over the ~3,200 pixels inside
#   the circle), i.e. ~10-20 s per 20,000-particle epoch on an H100 with AMP; 5 epochs ~1.5 min; eval_vol of
#   ~1,000 volumes ~1 min. GaussianEM's own steps (simulate, preprocess, fit, train) should take ~1 min. One preset
#   is then ~4-5 min: run one preset per device call. Raise EPOCHS when the budget allows: with 5 epochs neither
#   tool has converged, so the table compares short equal-length trainings.
#
# On the GPU machine (no internet): first, here, bash benchmarks/gpu/fetch_wheels.sh; then carry .whl and run e.g.
#   RESULTS=$OUT bash benchmarks/accuracy/compare_cryodrgn.sh adk
# (the script installs .whl/*.whl into /tmp/site itself and puts src/ and the MDAnalysisTests stand-in on PYTHONPATH).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N_PARTICLES=${N_PARTICLES:-20000}
BOX=${BOX:-64}
SNR=${SNR:-0.05}
EPOCHS=${EPOCHS:-5}
BATCH=${BATCH:-32}
ZDIM=${ZDIM:-10}
N_IMAGES=${N_IMAGES:-1000}
FIT_EPOCHS=${FIT_EPOCHS:-2}
SEED=${SEED:-0}
TOOLS=${TOOLS:-"gaussianem cryodrgn"}
WORK=${WORK:-/tmp/gaussianem-bench}
RESULTS=${RESULTS:-benchmarks/results}
DEVICE=${DEVICE:-cuda}
SIM_ARGS=${SIM_ARGS:-}
STEP_TIMEOUT=${STEP_TIMEOUT:-0}
GEM_TRAIN_ARGS=${GEM_TRAIN_ARGS:-}
GEM_PREPROCESS_ARGS=${GEM_PREPROCESS_ARGS:-}
GEM_FIT_ARGS=${GEM_FIT_ARGS:-}
CRYODRGN_TRAIN_ARGS=${CRYODRGN_TRAIN_ARGS:-}
PRESETS=("$@")
[ ${#PRESETS[@]} -eq 0 ] && PRESETS=(adk tcr-compositional tcr-mixed)
mkdir -p "$WORK" "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
LOG=$RESULTS/bench.log
PY=${PYTHON:-python3}

log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

# step NAME LOGFILE CMD...: run, log wall time, keep the output in LOGFILE; sets STEP_SECONDS; returns the status
step() {
  local name=$1 out=$2
  shift 2
  log "start $name: $*"
  local t0 t1 rc
  t0=$(date +%s.%N)
  if [ "$STEP_TIMEOUT" -gt 0 ] 2>/dev/null; then
    timeout --kill-after=15 "$STEP_TIMEOUT" bash -c '"$@"' step "$@" >"$out" 2>&1
  else
    "$@" >"$out" 2>&1
  fi
  rc=$?
  [ $rc -eq 124 ] && echo "step timed out after ${STEP_TIMEOUT} s" >>"$out"
  t1=$(date +%s.%N)
  STEP_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
  if [ $rc -eq 0 ]; then
    log "done  $name in ${STEP_SECONDS} s"
  else
    log "FAIL  $name (exit $rc) after ${STEP_SECONDS} s; last lines of $out:"
    tail -n 15 "$out" | sed 's/^/    /' | tee -a "$LOG" >&2
  fi
  return $rc
}

# --- environment: wheels carried as .whl/, the package from src/ --------------------------------------------------
# shellcheck source=benchmarks/gpu/gpu_env.sh
. "$ROOT/benchmarks/gpu/gpu_env.sh"
log "environment: .whl/ installed into /tmp/site when carried"
GPU_ENV_LOG=$RESULTS/install.log gpu_env || log "FAILED install wheels (see $RESULTS/install.log)"
export -f gem cryodrgn
export PY CRYODRGN_RUNNER

GPU=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")' 2>/dev/null)
log "device: ${GPU:-unknown}; presets: ${PRESETS[*]}; tools: $TOOLS; N=$N_PARTICLES box=$BOX snr=$SNR epochs=$EPOCHS" \
    "batch=$BATCH zdim=$ZDIM n_images=$N_IMAGES fit_epochs=$FIT_EPOCHS seed=$SEED"
"$PY" -c 'import cryodrgn; print("cryodrgn", cryodrgn.__version__)' 2>&1 | tee -a "$LOG" >&2

has_tool() { case " $TOOLS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
FAILED=0

# run_gem: preprocess, fit, train; writes GEM_OK, GEM_S, PRE_S, FIT_S to $L/gem.status
run_gem() {
  # shellcheck disable=SC2086
  if step "$P gaussianem preprocess" "$L/preprocess.log" gem preprocess "$W/sim/particles.star" \
      --map "$W/sim/consensus.mrc" -o "$W/dataset" --device "$DEVICE" $GEM_PREPROCESS_ARGS; then
    PRE_S=$STEP_SECONDS
    # shellcheck disable=SC2086
    if step "$P gaussianem fit" "$L/fit.log" gem fit "$W/dataset" --epochs "$FIT_EPOCHS" --batch-size "$BATCH" \
        --device "$DEVICE" --no-progress $GEM_FIT_ARGS; then
      FIT_S=$STEP_SECONDS
      # shellcheck disable=SC2086
      if step "$P gaussianem train" "$L/train_gaussianem.log" gem train "$W/dataset" -o "$W/gaussianem" \
          --epochs "$EPOCHS" --batch-size "$BATCH" --zdim "$ZDIM" --seed "$SEED" --device "$DEVICE" --no-progress \
          $GEM_TRAIN_ARGS; then
        GEM_OK=1; GEM_S=$STEP_SECONDS
      fi
    fi
  fi
  declare -p GEM_OK GEM_S PRE_S FIT_S > "$L/gem.status"
}

# run_cryodrgn: parse_star, the backprojection check, train_vae, eval_vol; writes CD_OK, CD_S, EVAL_S, BP_AUC to
# $L/cryodrgn.status
run_cryodrgn() {
  mkdir -p "$W/cryodrgn"
  if step "$P cryodrgn parse_star" "$L/parse_star.log" cryodrgn parse_star "$W/sim/particles.star" \
      --ctf "$W/cryodrgn/ctf.pkl" --poses "$W/cryodrgn/pose.pkl"; then
    # input check: cryoDRGN's homogeneous backprojection of (up to 5,000 of) the particles with the parsed poses and
    # CTF must match the simulator's consensus map in our frame (FSC-AUC logged; identity orientation expected)
    if step "$P cryodrgn backproject check" "$L/backproject.log" cryodrgn backproject_voxel "$W/sim/particles.mrcs" \
        --poses "$W/cryodrgn/pose.pkl" --ctf "$W/cryodrgn/ctf.pkl" -o "$W/cryodrgn/backproject" --first 5000 \
        --no-half-maps --no-fsc-vals; then
      BP_AUC=$("$PY" -c 'import sys, torch
from gaussianem.evaluation.metrics import fsc_auc_pair, spherical_mask
from gaussianem.io.mrc import read_volume
a = torch.as_tensor(read_volume(sys.argv[1])[0], dtype=torch.float64)
b = torch.as_tensor(read_volume(sys.argv[2])[0], dtype=torch.float64)
print(f"{fsc_auc_pair(a, b, spherical_mask(a.shape[-1])):.4f}")' "$W/cryodrgn/backproject/backproject.mrc" "$W/sim/consensus.mrc")
      log "$P cryodrgn backprojection vs simulator consensus: FSC-AUC $BP_AUC"
    fi
    # the simulator's stack is white (RELION's convention): cryoDRGN's default sign inversion is the right one
    # shellcheck disable=SC2086
    if step "$P cryodrgn train_vae" "$L/train_cryodrgn.log" cryodrgn train_vae "$W/sim/particles.mrcs" \
        --poses "$W/cryodrgn/pose.pkl" --ctf "$W/cryodrgn/ctf.pkl" --zdim "$ZDIM" -n "$EPOCHS" -b "$BATCH" \
        --seed "$SEED" -o "$W/cryodrgn/train" --no-analysis $CRYODRGN_TRAIN_ARGS; then
      CD_S=$STEP_SECONDS
      E=$W/cryodrgn/eval
      T0=$(date +%s.%N)
      if step "$P cryodrgn z files" "$L/eval_z.log" gem benchmark --truth "$W/sim" \
            --external-z "$W/cryodrgn/train/z.pkl" --write-eval-z "$E" --n-images "$N_IMAGES" --seed "$SEED" \
         && step "$P cryodrgn eval_vol particles" "$L/eval_vol_particles.log" cryodrgn eval_vol \
            "$W/cryodrgn/train/weights.pkl" -c "$W/cryodrgn/train/config.yaml" --zfile "$E/particles_z.txt" \
            -o "$E/particles" --Apix "$APIX" \
         && step "$P cryodrgn eval_vol states" "$L/eval_vol_states.log" cryodrgn eval_vol \
            "$W/cryodrgn/train/weights.pkl" -c "$W/cryodrgn/train/config.yaml" --zfile "$E/states_z.txt" \
            -o "$E/states" --Apix "$APIX"; then
        CD_OK=1
      fi
      EVAL_S=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
    fi
  fi
  declare -p CD_OK CD_S EVAL_S BP_AUC > "$L/cryodrgn.status"
}

for P in "${PRESETS[@]}"; do
  W=$WORK/$P
  rm -rf "$W"
  mkdir -p "$W/logs"
  L=$W/logs
  GEM_OK=0; CD_OK=0; GEM_S=""; CD_S=""; FIT_S=""; PRE_S=""; SIM_S=""; EVAL_S=""; BP_AUC=""
  PE=$((N_PARTICLES * EPOCHS))

  # shellcheck disable=SC2086
  if ! step "$P simulate" "$L/simulate.log" gem simulate --preset "$P" -o "$W/sim" --n-particles "$N_PARTICLES" \
      --box "$BOX" --snr "$SNR" --seed "$SEED" --device "$DEVICE" $SIM_ARGS; then
    FAILED=1; continue
  fi
  SIM_S=$STEP_SECONDS
  APIX=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["apix"])' "$W/sim/simulation.json")

  rm -f "$L/gem.status" "$L/cryodrgn.status"
  if [ "${PARALLEL_TOOLS:-0}" = 1 ]; then  # both tools at once on the GPU (their train times then share it)
    has_tool gaussianem && run_gem &
    has_tool cryodrgn && run_cryodrgn &
    wait
  else
    has_tool gaussianem && run_gem
    has_tool cryodrgn && run_cryodrgn
  fi
  # shellcheck disable=SC1091
  [ -f "$L/gem.status" ] && . "$L/gem.status"
  # shellcheck disable=SC1091
  [ -f "$L/cryodrgn.status" ] && . "$L/cryodrgn.status"

  ARGS=(--truth "$W/sim" -o "$W/bench" --n-images "$N_IMAGES" --seed "$SEED" --device "$DEVICE")
  [ $GEM_OK -eq 1 ] && ARGS=("$W/gaussianem" "${ARGS[@]}" --train-seconds "$GEM_S" --particle-epochs "$PE")
  [ $CD_OK -eq 1 ] && ARGS+=(--external-z "$W/cryodrgn/train/z.pkl" --external-volumes "$W/cryodrgn/eval"
                             --external-name cryodrgn --external-train-seconds "$CD_S" --external-particle-epochs "$PE")
  if [ $GEM_OK -eq 0 ] && [ $CD_OK -eq 0 ]; then
    log "$P: no tool produced a result"; FAILED=1; continue
  fi
  if step "$P benchmark" "$L/benchmark.log" gem benchmark "${ARGS[@]}"; then
    cp "$W/bench/metrics.md" "$RESULTS/$P.metrics.md"
    "$PY" benchmarks/accuracy/collect_results.py "$W/bench/metrics.json" --preset "$P" --device "${GPU:-unknown}" \
      --setting "n_particles=$N_PARTICLES" "box=$BOX" "snr=$SNR" "epochs=$EPOCHS" "batch=$BATCH" "zdim=$ZDIM" \
      "n_images=$N_IMAGES" "fit_epochs=$FIT_EPOCHS" "seed=$SEED" "cryodrgn_backprojection_fsc_auc=$BP_AUC" \
      "gem_preprocess_args=$GEM_PREPROCESS_ARGS" "gem_fit_args=$GEM_FIT_ARGS" "gem_train_args=$GEM_TRAIN_ARGS" \
      --timing "simulate_s=$SIM_S" "preprocess_s=$PRE_S" "fit_s=$FIT_S" "cryodrgn_eval_s=$EVAL_S" \
      --gem-log "$W/gaussianem/log.jsonl" --cryodrgn-log "$L/train_cryodrgn.log" \
      --tsv "$RESULTS/results.tsv" --jsonl "$RESULTS/results.jsonl" 2>&1 | tee -a "$LOG" >&2
  else
    FAILED=1
  fi
  if has_tool gaussianem && [ $GEM_OK -eq 0 ]; then FAILED=1; fi
  if has_tool cryodrgn && [ $CD_OK -eq 0 ]; then FAILED=1; fi
done
log "finished (failures: $FAILED); results in $RESULTS"
exit $FAILED
