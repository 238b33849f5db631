#!/usr/bin/env bash
# Session 24, device call 1 (issue 17), nine 20-epoch runs at once on one GPU, GaussianEM only (cryoDRGN's figures
# are its session-10 runs on the same particles), all three presets, scored at 5, 10 and 20:
#  essd, essd1: --encoder-split --amplitude-change signed --amplitude-start-steps 1250, seeds 0 and 1 (two encoders,
#     `signed`, the amplitudes after two displacement-only epochs): on the box-64 CPU proxy it kept the default's
#     per-image FSC-AUC at 5 (0.305 against 0.304; `ess` 0.300); do the 5-epoch states of `ess` survive the wait?
#  essd625: the same with the amplitudes after one epoch (625 steps): more amplitude epochs before epoch 5.
# (Screened on the box-64 CPU proxy first and dropped: ten times the gain penalty, 0.300; --readout-rank 8, 0.299.)
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s24-gpu/call1.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=${EPOCHS:-20} CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-540}
E="--encoder-split --amplitude-change signed"
W17=/tmp/w24a OUT=/tmp/s24a PACK=$D/s24a.tgz CHAINS=3 \
  bash $S "essd:$E --amplitude-start-steps 1250" "essd1:$E --amplitude-start-steps 1250 --seed 1" \
  "essd625:$E --amplitude-start-steps 625" > "$D/a.log" 2>&1
tail -n 80 "$D/a.log"
