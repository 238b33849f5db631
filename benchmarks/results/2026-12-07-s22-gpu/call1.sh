#!/usr/bin/env bash
# As run (session 22, uncommitted intermediate code): `linear` then meant today's `signed` (1 + Δa, not floored),
# and the gain penalty was mean relu(Δa)² in every mode (today: the log of the gain, gaussians.amplitude_log_gain).
# Session 22, device call 1 (issue 17). The CPU toy (tcr-compositional, box 32) found why the states sharpen slowly:
# with `softplus(raw + Δa)` a fitted cloud's small amplitudes change by a factor exp(Δa), so the image of a fading
# part stops changing long before the part is gone, and nothing holds the latents of the smaller states in place
# (their spread on the state axis was the widest). `--amplitude-change linear` (base amplitude × (1 + Δa)) holds
# them: toy ARI at epochs 3-6 0.334 / 0.580 / 0.739 / 0.819 against 0.339 / 0.584 / 0.710 / 0.780, and with one
# displacement-only epoch 0.557 / 0.720 / 0.822 / 0.861 (cryoDRGN 0.537 / 0.713 / 0.778 / 0.863).
# Here, 20 epochs on the three presets, scored at 5, 10 and 20, seeds 0 and 1:
# lin / lin_s1: --amplitude-change linear; lin1 / lin1_s1: the same with one displacement-only epoch (625 steps
# at 20,000 particles and batch 32; the split released at 1.5 epochs, the KL warmed up over the first).
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s22-gpu/call1.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
ONE="--amplitude-start-steps 625 --split-release-steps 937 --kl-warmup-steps 625"
export EPOCHS=${EPOCHS:-20} CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-540}
W17=/tmp/w22a OUT=/tmp/s22a PACK=$D/s22a.tgz CHAINS=4 \
  bash $S "lin:--amplitude-change linear" "lin_s1:--amplitude-change linear --seed 1" \
  "lin1:--amplitude-change linear $ONE" "lin1_s1:--amplitude-change linear $ONE --seed 1" > "$D/a.log" 2>&1
tail -n 60 "$D/a.log"
