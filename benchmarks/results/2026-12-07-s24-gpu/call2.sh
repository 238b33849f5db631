#!/usr/bin/env bash
# Session 24, device call 2 (issue 17; what the session's device time had left): adk only, 20 epochs, seed 0, two
# runs with the amplitude part's image encoder stopped after epoch 5 (new --amplitude-encoder-freeze-steps 3125):
#  essf: --encoder-split --amplitude-change signed (call 1's `ess` of session 23: adk 0.347 / 0.350 / 0.337 at 5 / 10 / 20)
#  essdf: the same with the amplitudes after two epochs (call 1's `essd`: 0.349 / 0.343 / 0.336)
# With two encoders the states are in the latent by epoch 5 and per-image FSC-AUC then falls while the KL rises
# (the defaults: 0.352 / 0.354 / 0.348); does an amplitude encoder that stops learning at 5 hold it?
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s24-gpu/call2.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=20 CRYODRGN=0 SCORE_EPOCHS="10" T_PRESET=${T_PRESET:-400} PRESETS=adk
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125"
W17=/tmp/w24b OUT=/tmp/s24b PACK=$D/s24b.tgz CHAINS=2 \
  bash $S "essf:$E" "essdf:$E --amplitude-start-steps 1250" > "$D/b.log" 2>&1
tail -n 30 "$D/b.log"
