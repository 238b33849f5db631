#!/usr/bin/env bash
# Session 23, device call 1 (issue 17). Two screens at once on one GPU (ten 20-epoch runs):
#  A) tcr-mixed only, seeds 2 and 3, the default (d2, d3) against --amplitude-change signed (s2, s3): in session 22,
#     signed's 2-class k-means on tcr-mixed split along the hinge at 20 epochs on seed 1 (ARI 0.000, probe 1.000);
#     does the mode or the seed cause it?
#  B) all three presets, --encoder-split --amplitude-change signed, seeds 0 and 1 (ess, ess1): the CPU toy's lead
#     (tcr-compositional ARI 0.834 at 5 against 0.810 for --encoder-split alone, cryoDRGN 0.778); on the GPU
#     --encoder-split alone cost adk per-image FSC-AUC (session 20: 0.335 against 0.348).
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s23-gpu/call1.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=${EPOCHS:-20} CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-540}
PRESETS=tcr-mixed W17=/tmp/w23a OUT=/tmp/s23a PACK=$D/s23a.tgz CHAINS=4 \
  bash $S "d2:--seed 2" "d3:--seed 3" "s2:--amplitude-change signed --seed 2" "s3:--amplitude-change signed --seed 3" \
  > "$D/a.log" 2>&1 &
W17=/tmp/w23b OUT=/tmp/s23b PACK=$D/s23b.tgz CHAINS=2 \
  bash $S "ess:--encoder-split --amplitude-change signed" "ess1:--encoder-split --amplitude-change signed --seed 1" \
  > "$D/b.log" 2>&1 &
wait
tail -n 40 "$D/a.log"; tail -n 60 "$D/b.log"
