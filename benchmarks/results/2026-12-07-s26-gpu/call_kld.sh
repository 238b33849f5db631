#!/usr/bin/env bash
# Session 26 (issue 17): NOT RUN (no machine started this session). A third way to keep the spare displacement
# dimension asleep after epoch 5, beside session 25's call3.sh (one displacement dimension less; a KL weight that
# rises): a larger KL weight on the latent split's displacement dimensions only (`--kl-displacement-scale S`, new in
# session 26; the amplitude dimensions keep --kl-weight). Nine 20-epoch runs at once, the three presets, seed 0,
# scored at 5, 10 and 20, on session 25's bases:
#  essfkd3:     essf (the amplitudes from the start, the encoder of the amplitudes stopped after epoch 5), S = 3
#  essfkd10:    the same, S = 10
#  essdf625kd3: essdf625 (the amplitudes after one epoch), S = 3
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s26-gpu/call_kld.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=20 CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-585}
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125"
W17=/tmp/w26c OUT=/tmp/s26c PACK=$D/s26c.tgz CHAINS=3 \
  bash $S "essfkd3:$E --kl-displacement-scale 3" "essfkd10:$E --kl-displacement-scale 10" \
  "essdf625kd3:$E --amplitude-start-steps 625 --kl-displacement-scale 3" > "$D/c.log" 2>&1
tail -n 60 "$D/c.log"
