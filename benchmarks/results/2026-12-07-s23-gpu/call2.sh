#!/usr/bin/env bash
# Session 23, device call 2 (issue 17), short (the session's last 378 s of device time): adk only, where
# --encoder-split --amplitude-change signed lost per-image FSC-AUC in call 1 (0.337 / 0.336 at 20 against the
# default's 0.348 / 0.351). On the CPU toy its decoded amplitudes move 58 % of the base's total amplitude per particle
# at epoch 20 on adk (which has no states), the default's 45 %, and --amplitude-weight 1e-1 (mean Δa²) brings it to
# 10 % with the displacements back (RMS 2.3 Å against 1.2). Does it bring the GPU's FSC-AUC back?
# essaw1 / essaw2: --encoder-split --amplitude-change signed --amplitude-weight 1e-1 / 1e-2.
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s23-gpu/call2.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu2.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=20 CRYODRGN=0 SCORE_EPOCHS="5" T_PRESET=${T_PRESET:-215}
PRESETS=adk W17=/tmp/w23c OUT=/tmp/s23c PACK=$D/s23c.tgz CHAINS=2 \
  bash $S "essaw1:--encoder-split --amplitude-change signed --amplitude-weight 1e-1" \
  "essaw2:--encoder-split --amplitude-change signed --amplitude-weight 1e-2" > "$D/c.log" 2>&1
tail -n 30 "$D/c.log"
