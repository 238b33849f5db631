#!/usr/bin/env bash
# Session 20, device call 2 (issue 17): call 1 found the two image encoders (es) ordering the hinge by epoch 5 (0.854
# against 0.685) and separating states sooner (ARI 0.876 against 0.851), but fitting the noise: training render loss
# lower, KL higher (17.3 against 11.6 nats on adk at 20) and per-image FSC-AUC 0.004-0.015 lower. Two ways to keep
# the first and lose the second, 20 epochs on the three presets at seed 0, scored at 5, 10 and 20:
# esd: amplitude changes after two epochs again (--amplitude-start-steps 1250, the warm-up over them);
# esk2: twice the KL weight (--kl-weight 4e-5).
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s20-gpu/call2.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=${EPOCHS:-20} CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-420}
W17=/tmp/w20b OUT=/tmp/s20b PACK=$D/s20b.tgz CHAINS=2 \
  bash $S "esd:--amplitude-start-steps 1250" "esk2:--kl-weight 4e-5" > "$D/b.log" 2>&1
tail -n 40 "$D/b.log"
