#!/usr/bin/env bash
# Session 25, device call 2 (issue 17): how much cryoDRGN's own 5-epoch figures vary, and call 1's settings on a
# second seed. The acceptance compares ours with cryoDRGN's single session-10 run (seed 0); ours vary by 0.003-0.04
# between seeds. cryoDRGN with --seed 1 for 5 epochs (its z.5.pkl is scored beside ours), all three presets, on the
# same particles; beside it GaussianEM for 20 epochs, seed 1 (scored at 5 and 20):
#  essdf1:     --encoder-split --amplitude-change signed --amplitude-start-steps 1250 --amplitude-encoder-freeze-steps 3125
#  essdf625_1: the same with --amplitude-start-steps 625
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s25-gpu/call2.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=20 CRYODRGN=1 CRYO_EPOCHS=5 CRYO_SEED=1 T_CRYO=${T_CRYO:-300} SCORE_EPOCHS="5" T_PRESET=${T_PRESET:-480}
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125 --seed 1"
W17=/tmp/w25b OUT=/tmp/s25b PACK=$D/s25b.tgz CHAINS=2 \
  bash $S "essdf1:$E --amplitude-start-steps 1250" "essdf625_1:$E --amplitude-start-steps 625" > "$D/b.log" 2>&1
tail -n 60 "$D/b.log"
