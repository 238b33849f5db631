#!/usr/bin/env bash
# Session 21, device call 1 (issue 17): the gaps left with the defaults are tcr-compositional's states at epoch 5
# (ARI 0.851, probe 0.946; cryoDRGN 0.924 / 0.973) and adk's motion R² at 20 (0.862; cryoDRGN 0.879). 20 epochs on
# the three presets at seed 0, scored at 5, 10 and 20:
# w20: --lr-schedule wsd (constant to epoch 15, so its epochs 5 and 10 are the defaults' in this call; session 18's
#      one run, whose swing had missed, gave adk R² 0.891 and ARI 0.990 at 20);
# rl10 / rl3: --readout-lr-scale 10 / 3 (the zero-started amplitude read-out at 10 / 3 × lr, so the states reach
#      the encoder sooner; CPU toys: ARI +0.056 / +0.016 at 6 epochs).
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s21-gpu/call1.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=${EPOCHS:-20} CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-540}
W17=/tmp/w21a OUT=/tmp/s21a PACK=$D/s21a.tgz CHAINS=3 \
  bash $S "w20:--lr-schedule wsd" "rl10:--readout-lr-scale 10" "rl3:--readout-lr-scale 3" > "$D/a.log" 2>&1
tail -n 40 "$D/a.log"
