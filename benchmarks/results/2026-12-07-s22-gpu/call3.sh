#!/usr/bin/env bash
# Session 22, device call 3 (issue 17). Calls 1-2: a linear amplitude change brings the states sooner, but per-image
# FSC-AUC fell 0.011-0.016 on the two state presets, floored or not. The CPU toy shows why: the gain penalty
# (mean relu(Δa)²) prices a doubling at Δa = 1 in the linear modes, at Δa = log 2 in the log mode, so the full state
# (its parts at ×2-4 of the consensus) was drawn too faint (total amplitude 1.42 × the base against 1.54; 1.57 with
# no gain penalty). Now the penalty is on the log of the gain in every mode (gaussians.amplitude_log_gain).
# signed / signed_s1: --amplitude-change signed (1 + Δa, not floored); lin / lin_s1: linear (floored smoothly).
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s22-gpu/call3.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=${EPOCHS:-20} CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-540}
W17=/tmp/w22c OUT=/tmp/s22c PACK=$D/s22c.tgz CHAINS=4 \
  bash $S "signed:--amplitude-change signed" "signed_s1:--amplitude-change signed --seed 1" \
  "lin:--amplitude-change linear" "lin_s1:--amplitude-change linear --seed 1" > "$D/c.log" 2>&1
tail -n 60 "$D/c.log"
