#!/usr/bin/env bash
# Session 26, device call 2 (issue 17): call 1's (session 25's call3.sh) chosen settings on a second seed, the
# three presets, 20 epochs, scored at 5 and 20, GaussianEM only (cryoDRGN's seed-1 latents at 5 are session 25's;
# at 20 only seed 0 exists). Each argument is NAME:FLAGS as for gpu_issue17_screen.sh; --seed 1 is appended.
# Run from the repository root on the device machine:
#   D=$OUT bash benchmarks/results/2026-12-07-s26-gpu/call_seed1.sh "NAME:FLAGS" ...
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=20 CRYODRGN=0 SCORE_EPOCHS="5" T_PRESET=${T_PRESET:-480}
args=(); for a in "$@"; do args+=("${a%%:*}_1:${a#*:} --seed 1"); done
W17=/tmp/w26b OUT=/tmp/s26b PACK=$D/s26b.tgz CHAINS=${CHAINS:-${#args[@]}} \
  bash $S "${args[@]}" > "$D/b.log" 2>&1
tail -n 60 "$D/b.log"
