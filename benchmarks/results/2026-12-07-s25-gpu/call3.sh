#!/usr/bin/env bash
# Session 25, device call 3 (issue 17): NOT RUN this session (the next try was refused with 409 s of device time
# left); the next session's first call. Nine 20-epoch runs at once, the three presets, seed 0, scored at 5, 10, 20.
# Calls 1-2 (the amplitude encoder stopped after epoch 5, `--amplitude-encoder-freeze-steps 3125`): adk's per-image
# FSC-AUC holds, but the tcr sets' still falls after epoch 5 and the KL still rises. In every two-encoder run (sessions
# 23-25, freeze or not) with a nearly unused displacement dimension at epoch 5 (sd of mu 0.22-0.45), it wakes by 20
# (1.1-1.5) carrying almost nothing of the truth (`VARIANT.eE.groups.md`), and those runs lose per-image FSC-AUC at
# 20; the runs with all three in use at 5 mostly keep it. Two ways to deny the spare dimension, on two bases:
#  essf (amplitudes from the start: the best 5-epoch latent measured, session 23's `ess`: 11 of 16 latent points
#  on every seed, acceptance.md) and essdf625 (amplitudes after one epoch):
#  essfd2, essdf625d2: one displacement dimension less (--displacement-dims 2, the default 3): no spare one
#  essfk4:             a KL weight that rises after epoch 5, to four times at 20 (--kl-start-weight 2e-5
#                      --kl-ramp-start 0.25 --kl-weight 8e-5; relative to the run, so epoch 5 is essf's)
# The epoch records now log `kl_amplitude` (the KL of the split's amplitude dimensions): the table's "KL amp." column
# says which part's KL rises. Afterwards: python benchmarks/accuracy/issue17_acceptance.py --setting ...
# (T_PRESET 585: at 560 the last latent_groups.py of call 1 was cut.)
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s25-gpu/call3.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=20 CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-585}
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125"
K="--kl-start-weight 2e-5 --kl-ramp-start 0.25 --kl-weight 8e-5"
W17=/tmp/w25c OUT=/tmp/s25c PACK=$D/s25c.tgz CHAINS=3 \
  bash $S "essfd2:$E --displacement-dims 2" "essfk4:$E $K" \
  "essdf625d2:$E --amplitude-start-steps 625 --displacement-dims 2" > "$D/c.log" 2>&1
tail -n 60 "$D/c.log"
