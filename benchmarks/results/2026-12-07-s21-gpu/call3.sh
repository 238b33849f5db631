#!/usr/bin/env bash
# Session 21, device call 3 (issue 17): the new default (--lr-schedule wsd) on a third seed, 20 epochs on the three
# presets, scored at 5, 10 and 20 (calls 1 and 2: seeds 0 and 1).
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s21-gpu/call3.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=${EPOCHS:-20} CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-250}
W17=/tmp/w21c OUT=/tmp/s21c PACK=$D/s21c.tgz CHAINS=1 bash $S "d2:--seed 2" > "$D/c.log" 2>&1
tail -n 20 "$D/c.log"
