#!/usr/bin/env bash
# Device call (issue 17): the latent after 5 and after 20 epochs, GaussianEM's training variants against cryoDRGN,
# on the same simulated particles, the three presets at once on one GPU.
# Per preset (in parallel): simulate (N particles, box 64, SNR 0.05, seed 0), preprocess, fit; then at once cryoDRGN
# train_vae for EPOCHS and each GaussianEM variant for EPOCHS (in CHAINS parallel chains); then `gaussianem benchmark`
# of each variant at epochs 5 (SCORE_EPOCHS) and EPOCHS with cryoDRGN's z.E.pkl of the same epoch as --external-z
# (latent metrics only: ARI, abs(rho), probes; the per-image FSC-AUC is GaussianEM's alone, N_IMAGES scored images
# at EPOCHS). cryoDRGN's learning rate is constant; GaussianEM's default (--lr-schedule wsd, since session 21) is
# constant for the first three quarters of the run, so epoch 5 of a 20-epoch run is a 5-epoch run at the constant
# rate (up to the data order); a 5-epoch run decays over its last 1.25 epochs (a variant's own --epochs 5 measures
# it), and a variant with --lr-schedule cosine decays from the start.
#   OUT=out bash benchmarks/accuracy/gpu_issue17_screen.sh "base:" "l2:--render-loss l2"
# Several seeds: a variant's flags may end with --seed S (the last --seed wins), e.g. "base1:--seed 1"; when the
# hinge enters the latent varies between identical runs (RESULTS.md, latent-split-gpu-2026-12-06), so rank settings
# by the epoch-5/10 hinge only over several seeds.
# Environment: PRESETS="adk tcr-compositional tcr-mixed" N_PARTICLES=20000 EPOCHS=20 SNR=0.05 FIT_EPOCHS=3
# N_IMAGES=200 T_PRESET=560 (seconds per preset pipeline)
# T_CRYO=400 (seconds of cryoDRGN's training: the epochs it finished are scored) CRYODRGN=1 (0: GaussianEM only).
# CRYO_EPOCHS=EPOCHS, CRYO_SEED=0: cryoDRGN's epochs and seed (a second seed measures how much its figures vary).
# CHAINS=1: the variants of a preset train in this many parallel chains; SCORE_EPOCHS="5": the epochs scored besides
# EPOCHS (e.g. "5 10"). PACK=FILE.tgz: after every scored run, OUT (without the runs' full log.jsonl; each run's
# epoch records are in VARIANT.epochs.jsonl) is packed into FILE.tgz, so a call cut by its time limit still
# returns what was scored (the device returns a few files only: put OUT outside the returned folder, e.g.
# OUT=/tmp/screen PACK=$OUT/screen.tgz).
# Sizing on an H100 (2026-12-06, all three presets at once): simulate + preprocess + fit ≈ 75 s, GaussianEM
# ≈ 100 s per 20-epoch variant, cryoDRGN 70 s for its first epoch and 17.5 s for each next one (≈ 7 min for 20:
# more than one call leaves after the rest; with T_CRYO=380 it stopped after 12 epochs, and
# `train_vae ... -n 20 --load W/cryodrgn/train/weights.12.pkl` in a second call finished it in 3 min), benchmarks
# ≈ 5-10 s each. cryoDRGN is scored on its latents only (`benchmark --external-z` without volumes).
# Each scored epoch also gets VARIANT.eE.groups.md (benchmarks/accuracy/latent_groups.py: the probes and the k-means
# ARI on the split's displacement and amplitude dimensions and on all of z).
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
[ $# -eq 0 ] && set -- "base:"
DEVICE=${DEVICE:-cuda} N=${N_PARTICLES:-20000} EPOCHS=${EPOCHS:-20} SNR=${SNR:-0.05} FIT_EPOCHS=${FIT_EPOCHS:-3} N_IMAGES=${N_IMAGES:-200}
W0=${W17:-/tmp/issue17}  # scratch: each preset's folder is emptied first
timed() {  # LOG NAME COMMAND...: runs it, logs its exit status and seconds
  local log=$1 name=$2 t0 rc; shift 2
  t0=$(date +%s)
  "$@" > "$log.$name.log" 2>&1; rc=$?
  echo "[$(date +%H:%M:%S)] $name: exit $rc in $(( $(date +%s) - t0 )) s" >> "$log.steps"
  return $rc
}
pipeline() {  # PRESET VARIANT...
  local p=$1 w=$W0/$1 o=$OUT/$1 v name flags e z; shift
  rm -rf "$w"; mkdir -p "$w" "$o"
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
         --ctf "$w/cryodrgn/ctf.pkl" --zdim 10 -n "${CRYO_EPOCHS:-$EPOCHS}" -b 32 --seed "${CRYO_SEED:-0}" \
         -o "$w/cryodrgn/train" --no-analysis) &
  fi
  local chain
  for chain in $(seq 0 $(( ${CHAINS:-1} - 1 ))); do
    (i=0
     for v in "$@"; do
       [ $(( i++ % ${CHAINS:-1} )) = "$chain" ] || continue
       name=${v%%:*} flags=${v#*:}
       # shellcheck disable=SC2086
       timed "$o/p" "train-$name" gem train "$w/dataset" -o "$w/$name" --epochs "$EPOCHS" --batch-size 32 \
           --zdim 10 --seed 0 --device "$DEVICE" --no-progress $flags
       cp "$w/$name/log.jsonl" "$o/$name.log.jsonl" 2>/dev/null &&
         grep '"type": "epoch"' "$o/$name.log.jsonl" > "$o/$name.epochs.jsonl"
       # without cryoDRGN, scored at once while the next variant trains
       [ "${CRYODRGN:-1}" = 1 ] || score "$p" "$name" &
     done
     wait) &
  done
  wait  # with cryoDRGN: its latents (of the same epochs) are scored beside each variant, once it has finished
  if [ "${CRYODRGN:-1}" = 1 ]; then
    for v in "$@"; do score "$p" "${v%%:*}"; done
  fi
}
score() {  # PRESET VARIANT: `gaussianem benchmark` at SCORE_EPOCHS and EPOCHS (per-image FSC-AUC on N_IMAGES
  # images at EPOCHS, on 20 at the others), with cryoDRGN's z of the same epoch when there is one
  local p=$1 name=$2 w=$W0/$1 o=$OUT/$1 e z n
  for e in $(printf "%s\n" ${SCORE_EPOCHS:-5} "$EPOCHS" | sort -un); do
    z=()
    [ -f "$w/cryodrgn/train/z.$e.pkl" ] && z=(--external-z "$w/cryodrgn/train/z.$e.pkl" --external-name cryodrgn)
    n=20; [ "$e" = "$EPOCHS" ] && n=$N_IMAGES
    timed "$o/p" "bench-$name-$e" gem benchmark "$w/$name" --truth "$w/sim" -o "$w/bench-$name-$e" --epoch "$e" \
        --n-images "$n" --seed 0 --device "$DEVICE" "${z[@]}" &&
      cp "$w/bench-$name-$e/metrics.json" "$o/$name.e$e.metrics.json" &&
      cp "$w/bench-$name-$e/metrics.md" "$o/$name.e$e.metrics.md"
    # the probes and the k-means ARI on each part of the latent split (which part holds the states, and whether
    # they are its largest structure)
    "$PY" benchmarks/accuracy/latent_groups.py "$w/$name" "$w/sim" --epochs "$e" > "$o/$name.e$e.groups.md" 2>&1
    pack
  done
}
pack() {  # with PACK: OUT, less the full logs, into PACK (written whole, then renamed: never a half-written archive)
  [ -n "${PACK:-}" ] || return 0
  local tmp
  tmp=$(mktemp "$PACK.XXXXXX") &&
    tar czf "$tmp" --exclude='*.log.jsonl' -C "$(dirname "$OUT")" "$(basename "$OUT")" 2>/dev/null &&
    mv -f "$tmp" "$PACK" || rm -f "$tmp"
}
export -f timed pipeline score pack gem cryodrgn
export PACK T_CRYO=${T_CRYO:-400} CRYO_EPOCHS CRYO_SEED PY=${PY:-python3} CRYODRGN_RUNNER DEVICE OUT W0 N EPOCHS SNR FIT_EPOCHS N_IMAGES
export CHAINS=${CHAINS:-1} SCORE_EPOCHS=${SCORE_EPOCHS:-5}
for p in ${PRESETS:-adk tcr-compositional tcr-mixed}; do
  timeout "${T_PRESET:-560}" bash -c 'pipeline "$@"' _ "$p" "$@" &
done
wait
stamp "pipelines"
python3 benchmarks/accuracy/issue17_table.py "$OUT" | tee "$OUT/summary.md"
pack
