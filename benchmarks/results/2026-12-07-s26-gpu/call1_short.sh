#!/usr/bin/env bash
# Session 26 (issue 17): session 25's call3.sh cut to fit less device time (refusals had spent it): its two
# `--displacement-dims 2` settings only (no spare displacement dimension to wake after epoch 5), the three presets,
# seed 0, 20 epochs, scored at 5 and 20 (not 10). Six runs at once instead of nine.
#  essfd2:     --encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125 --displacement-dims 2
#  essdf625d2: the same with --amplitude-start-steps 625
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s26-gpu/call1_short.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=20 CRYODRGN=0 SCORE_EPOCHS="5" T_PRESET=${T_PRESET:-440}
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125 --displacement-dims 2"
V=("essfd2:$E")  # ONE=1: essfd2 only (three runs at once), for still less device time
[ -z "${ONE:-}" ] && V+=("essdf625d2:$E --amplitude-start-steps 625")
W17=/tmp/w26a OUT=/tmp/s26a PACK=$D/s26a.tgz CHAINS=${#V[@]} bash $S "${V[@]}" > "$D/a.log" 2>&1
tail -n 60 "$D/a.log"
