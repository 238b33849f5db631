#!/usr/bin/env bash
# Session 25, device call 1 (issue 17): nine 20-epoch runs at once on one GPU, GaussianEM only (cryoDRGN's figures
# are its session-10 runs on the same particles), all three presets, scored at 5, 10 and 20. Every run stops the
# amplitude part's image encoder after epoch 5 (--amplitude-encoder-freeze-steps 3125; 625 steps per epoch), so
# its 5-epoch figures are those of the same setting without the freeze (sessions 23-24); the question is 10 and 20:
#  essf:     --encoder-split --amplitude-change signed (session 23's `ess`: adk per-image FSC-AUC 0.347 / 0.350 / 0.337)
#  essdf:    the same, amplitudes after two epochs (session 24's `essd`: 0.349 / 0.343 / 0.336)
#  essdf625: the same, amplitudes after one epoch (session 24's `essd625`: the best states at 5; adk 0.336 at 20)
# (the defaults: adk 0.352 / 0.354 / 0.348.) With two encoders the KL keeps rising after 5 and per-image FSC-AUC
# falls; does an amplitude encoder that stops learning at 5 hold it?
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s25-gpu/call1.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=20 CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-560}
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125"
W17=/tmp/w25a OUT=/tmp/s25a PACK=$D/s25a.tgz CHAINS=3 \
  bash $S "essf:$E" "essdf:$E --amplitude-start-steps 1250" "essdf625:$E --amplitude-start-steps 625" \
  > "$D/a.log" 2>&1
tail -n 80 "$D/a.log"
