#!/usr/bin/env bash
# Session 27, device call 1 (issue 17): the two ways to keep the spare displacement dimension asleep that sessions
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
export EPOCHS=20 CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-585}
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125"
W17=/tmp/w27a OUT=/tmp/s27a PACK=$D/s27a.tgz CHAINS=3 \
  bash $S "essfd2:$E --displacement-dims 2" "essfkd3:$E --kl-displacement-scale 3" \
  "essdf625d2:$E --amplitude-start-steps 625 --displacement-dims 2" > "$D/c.log" 2>&1
tail -n 60 "$D/c.log"
