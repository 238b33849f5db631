#!/usr/bin/env bash
# Session 25, device call 3 (issue 17): NOT RUN this session (the next try was refused with 409 s of device time
# left); the next session's first call. Nine 20-epoch runs at once, the three presets, seed 0, scored at 5, 10 and 20.
# Calls 1-2: with two encoders, the amplitudes after one epoch and the amplitude encoder stopped after epoch 5
# (`essdf625`), the states and the hinge are in z by epoch 5 and adk's per-image FSC-AUC holds, but tcr-mixed's stays
# at 0.379 -> 0.377 -> 0.373 (5/10/20) while the default's rises 0.374 -> 0.382 -> 0.386, and the KL rises (14.0 ->
# 16.7; the default 10.0 -> 8.6) even with the amplitude encoder stopped. Does a KL weight that rises after epoch 5
# hold it, or one displacement dimension less? The KL schedule is relative to the run (--kl-ramp-start 0.25 = epoch 5
# of 20), so the ramp's epoch-5 figures are those without it. The epoch records now log `kl_amplitude` (the KL of the split's amplitude dimensions), so the
# table says which part's KL rises.
#  essdf625k4: essdf625 + --kl-start-weight 2e-5 --kl-weight 8e-5 --kl-ramp-start 0.25 (four times the weight at 20)
#  essdf625d2: essdf625 with two displacement dimensions (--displacement-dims 2, the default 3): on
#              tcr-compositional, which has no motion, essdf625's third displacement dimension was nearly unused at 5
#              (sd of mu 0.24) and woke after the freeze (1.35 at 10): one spare dimension less to fit noise with
#  essdf625:   essdf625 again, without the ramp: the baseline, how much a repeat moves it, and (from kl_amplitude)
#              which part's KL rises after the freeze (the amplitude encoder's weights are fixed from epoch 5 on)
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s25-gpu/call3.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=20 CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-570}
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125"
K="--kl-start-weight 2e-5 --kl-ramp-start 0.25"
W17=/tmp/w25c OUT=/tmp/s25c PACK=$D/s25c.tgz CHAINS=3 \
  bash $S "essdf625k4:$E --amplitude-start-steps 625 $K --kl-weight 8e-5" \
  "essdf625d2:$E --amplitude-start-steps 625 --displacement-dims 2" \
  "essdf625:$E --amplitude-start-steps 625" > "$D/c.log" 2>&1
tail -n 60 "$D/c.log"
