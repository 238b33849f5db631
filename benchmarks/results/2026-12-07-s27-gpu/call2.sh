#!/usr/bin/env bash
# Session 27, device call 2 (issue 17), on the machine call 1 left warm: the two ways to keep the spare displacement dimension asleep that sessions
# 25-26 prepared, one of each in one call, because starting a machine kept failing (sessions 26-27): nine 20-epoch
# runs at once, the three presets, seed 0, scored at 5, 10, 20 (call3.sh of session 25 and call_kld.sh of session 26,
# cut to their first settings, plus essdf625d2):
#  essfd2:     essf with one displacement dimension less (--displacement-dims 2, the default 3): no spare one
#  essfkd3:    essf with three times the KL weight on the displacement dimensions (--kl-displacement-scale 3)
#  essdf625d2: essdf625 (amplitudes after one epoch) with --displacement-dims 2
# essf: --encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125 (session 25).
# Afterwards: python benchmarks/accuracy/issue17_acceptance.py --setting ...
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s27-gpu/call1.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=20 CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-540}
K="--kl-start-weight 2e-5 --kl-ramp-start 0.25 --kl-weight 8e-5"
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125"
W17=/tmp/w27b OUT=/tmp/s27b PACK=$D/s27b.tgz CHAINS=3 \
  bash $S "essfkd10:$E --kl-displacement-scale 10" "essfk4:$E $K" \
  "essdf625kd3:$E --amplitude-start-steps 625 --kl-displacement-scale 3" > "$D/c.log" 2>&1
tail -n 60 "$D/c.log"
