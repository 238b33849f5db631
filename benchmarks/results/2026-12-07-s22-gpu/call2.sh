#!/usr/bin/env bash
# As run (session 22, uncommitted intermediate code): the gain penalty was mean relu(Δa)² in every mode (today: the
# log of the gain, gaussians.amplitude_log_gain); `linear` and `clamp` meant what they mean today.
# Session 22, device call 2 (issue 17). Call 1: `--amplitude-change` with base × (1 + Δa), unfloored, brought the
# states sooner (tcr-compositional ARI at 5 0.895 / 0.876 against 0.850 / 0.811) and kept the hinge (0.722 / 0.202
# at 5, 0.926 / 0.911 at 20), but per-image FSC-AUC fell (tcr-compositional 0.367 / 0.369 at 20 against 0.383 /
# 0.387): on the CPU toy a quarter of the smallest state's amplitudes went negative. One displacement-only epoch
# lost the hinge (0.036 / 0.032 at 5). Here the factor floored at zero, on the toy as good for the states
# (ARI at 5 / 6: 0.741 / 0.825 smooth, 0.746 / 0.824 hard, against 0.739 / 0.819 unfloored):
# lin / lin_s1: --amplitude-change linear (softplus(10 (1 + Δa)) / 10); clamp / clamp_s1: max(1 + Δa, 0).
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s22-gpu/call2.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=${EPOCHS:-20} CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-540}
W17=/tmp/w22b OUT=/tmp/s22b PACK=$D/s22b.tgz CHAINS=4 \
  bash $S "lin:--amplitude-change linear" "lin_s1:--amplitude-change linear --seed 1" \
  "clamp:--amplitude-change clamp" "clamp_s1:--amplitude-change clamp --seed 1" > "$D/b.log" 2>&1
tail -n 60 "$D/b.log"
