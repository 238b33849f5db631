#!/usr/bin/env bash
# Device call (issue 17): the latent after 5 and after 20 epochs, GaussianEM's training variants against cryoDRGN,
# on the same simulated particles, the three presets at once on one GPU.
# Per preset (in parallel): simulate (N particles, box 64, SNR 0.05, seed 0), preprocess, fit; then at once cryoDRGN
# train_vae for EPOCHS and each GaussianEM variant for EPOCHS (one after the other); then `gaussianem benchmark` of
# each variant at epochs 5 and EPOCHS with cryoDRGN's z.5.pkl / z.EPOCHS.pkl as --external-z (latent metrics only:
# ARI, abs(rho), probes; the per-image FSC-AUC is GaussianEM's alone, N_IMAGES scored images). cryoDRGN has no
# learning-rate schedule, so its z.5 equals a 5-epoch run's; GaussianEM's epoch 5 is that of a 20-epoch cosine
# schedule (its learning rate still ~85 % of the peak).
#   OUT=out bash benchmarks/accuracy/gpu_issue17_screen.sh "base:" "l2:--render-loss l2"
# Environment: PRESETS="adk tcr-compositional tcr-mixed" N_PARTICLES=20000 EPOCHS=20 SNR=0.05 FIT_EPOCHS=3
# N_IMAGES=200 T_PRESET=560 (seconds per preset pipeline)
# T_CRYO=400 (seconds of cryoDRGN's training: the epochs it finished are scored) CRYODRGN=1 (0: GaussianEM only).
# Sizing on an H100 (2026-12-06, all three presets at once): simulate + preprocess + fit ≈ 75 s, GaussianEM
# ≈ 100 s per 20-epoch variant, cryoDRGN 70 s for its first epoch and 17.5 s for each next one (≈ 7 min for 20:
# more than one call leaves after the rest; with T_CRYO=380 it stopped after 12 epochs, and
# `train_vae ... -n 20 --load W/cryodrgn/train/weights.12.pkl` in a second call finished it in 3 min), benchmarks
# ≈ 5-10 s each. cryoDRGN is scored on its latents only (`benchmark --external-z` without volumes).
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
[ $# -eq 0 ] && set -- "base:"
DEVICE=${DEVICE:-cuda} N=${N_PARTICLES:-20000} EPOCHS=${EPOCHS:-20} SNR=${SNR:-0.05} FIT_EPOCHS=${FIT_EPOCHS:-3} N_IMAGES=${N_IMAGES:-200}
W0=/tmp/issue17
timed() {  # LOG NAME COMMAND...: runs it, logs its exit status and seconds
  local log=$1 name=$2 t0 rc; shift 2
  t0=$(date +%s)
  "$@" > "$log.$name.log" 2>&1; rc=$?
  echo "[$(date +%H:%M:%S)] $name: exit $rc in $(( $(date +%s) - t0 )) s" >> "$log.steps"
  return $rc
}
pipeline() {  # PRESET VARIANT...
  local p=$1 w=$W0/$1 o=$OUT/$1 v name flags e z; shift
  mkdir -p "$w" "$o"
  timed "$o/p" simulate gem simulate --preset "$p" -o "$w/sim" --n-particles "$N" --box 64 --snr "$SNR" --seed 0 \
      --device "$DEVICE" || return 1
  timed "$o/p" preprocess gem preprocess "$w/sim/particles.star" --map "$w/sim/consensus.mrc" -o "$w/dataset" \
      --device "$DEVICE" || return 1
  timed "$o/p" fit gem fit "$w/dataset" --epochs "$FIT_EPOCHS" --batch-size 32 --device "$DEVICE" --no-progress || return 1
  if [ "${CRYODRGN:-1}" = 1 ]; then
    (mkdir -p "$w/cryodrgn"
     timed "$o/p" parse_star cryodrgn parse_star "$w/sim/particles.star" --ctf "$w/cryodrgn/ctf.pkl" \
         --poses "$w/cryodrgn/pose.pkl" &&
     timed "$o/p" cryodrgn timeout "$T_CRYO" bash -c 'cryodrgn "$@"' _ train_vae "$w/sim/particles.mrcs" --poses "$w/cryodrgn/pose.pkl" \
         --ctf "$w/cryodrgn/ctf.pkl" --zdim 10 -n "$EPOCHS" -b 32 --seed 0 -o "$w/cryodrgn/train" --no-analysis) &
  fi
  for v in "$@"; do
    name=${v%%:*} flags=${v#*:}
    # shellcheck disable=SC2086
    timed "$o/p" "train-$name" gem train "$w/dataset" -o "$w/$name" --epochs "$EPOCHS" --batch-size 32 --zdim 10 \
        --seed 0 --device "$DEVICE" --no-progress $flags
    cp "$w/$name/log.jsonl" "$o/$name.log.jsonl" 2>/dev/null
  done
  wait
  for v in "$@"; do
    name=${v%%:*}
    for e in $(printf "%s\n" 5 "$EPOCHS" | sort -un); do
      z=()
      [ -f "$w/cryodrgn/train/z.$e.pkl" ] && z=(--external-z "$w/cryodrgn/train/z.$e.pkl" --external-name cryodrgn)
      timed "$o/p" "bench-$name-$e" gem benchmark "$w/$name" --truth "$w/sim" -o "$w/bench-$name-$e" --epoch "$e" \
          --n-images "$N_IMAGES" --seed 0 --device "$DEVICE" "${z[@]}" &&
        cp "$w/bench-$name-$e/metrics.json" "$o/$name.e$e.metrics.json" &&
        cp "$w/bench-$name-$e/metrics.md" "$o/$name.e$e.metrics.md"
    done
  done
}
export -f timed pipeline gem cryodrgn
export T_CRYO=${T_CRYO:-400} PY=${PY:-python3} CRYODRGN_RUNNER DEVICE OUT W0 N EPOCHS SNR FIT_EPOCHS N_IMAGES
for p in ${PRESETS:-adk tcr-compositional tcr-mixed}; do
  timeout "${T_PRESET:-560}" bash -c 'pipeline "$@"' _ "$p" "$@" &
done
wait
stamp "pipelines"
python3 benchmarks/accuracy/issue17_table.py "$OUT" | tee "$OUT/summary.md"
