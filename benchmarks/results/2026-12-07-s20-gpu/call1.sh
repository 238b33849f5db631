#!/usr/bin/env bash
# Session 20, device call 1 (issue 17): one image encoder per part of the latent split (--encoder-split, amplitudes
# from the start), the new default, against session 19's defaults (--no-encoder-split: one encoder, two
# displacement-only epochs), 20 epochs on the three presets at seed 0, scored at 5, 10 and 20. (CPU toys: the hinge
# 0.404 / 0.766 / 0.861 at epochs 2 / 4 / 6 with amplitudes on from the start, against 0.446 / 0.678 / 0.821;
# tcr-compositional ARI 0.814 against 0.763 at 6.)
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s20-gpu/call1.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=${EPOCHS:-20} CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-480}
W17=/tmp/w20a OUT=/tmp/s20a PACK=$D/s20a.tgz CHAINS=2 \
  bash $S "es:" "old:--no-encoder-split" > "$D/a.log" 2>&1
tail -n 40 "$D/a.log"
