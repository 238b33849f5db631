#!/usr/bin/env bash
# Session 19, device call 1 (issue 17): the KL warm-up on the three presets, 10 epochs, scored at 5 and 10.
# adk + tcr-compositional: base, kw (warm-up to the amplitude start, 1,250 steps), kwo1 (one displacement-only
# epoch, the warm-up over two: what kept the swing on the CPU at this scale in session 18), and on
# tcr-mixed kw and kwo1 at seeds 1 and 2 too. (On the CPU toys, amplitudes from the start with the warm-up lost
# the swing: 0.075 at epoch 6.)
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s19-gpu/call1.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
KW="kw:--kl-warmup-steps 1250"
O1="kwo1:--kl-warmup-steps 1250 --amplitude-start-steps 625 --split-release-steps 937"
export EPOCHS=${EPOCHS:-10} CRYODRGN=0 SCORE_EPOCHS=5 T_PRESET=${T_PRESET:-480}
W17=/tmp/w19a OUT=/tmp/s19a PACK=$D/s19a.tgz PRESETS="adk tcr-compositional" CHAINS=3 \
  bash $S "base:" "$KW" "$O1" > "$D/a.log" 2>&1 &
W17=/tmp/w19b OUT=/tmp/s19b PACK=$D/s19b.tgz PRESETS=tcr-mixed CHAINS=6 \
  bash $S "base:" "$KW" "kws1:--kl-warmup-steps 1250 --seed 1" "$O1" "kwo1s1:${O1#*:} --seed 1" "kwo1s2:${O1#*:} --seed 2" > "$D/b.log" 2>&1 &
wait
tail -n 30 "$D/a.log" "$D/b.log"
