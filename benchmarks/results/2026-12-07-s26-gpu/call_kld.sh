#!/usr/bin/env bash
# Session 26 (issue 17): NOT RUN (no machine started this session). A third way to keep the spare displacement
# dimension asleep after epoch 5, beside session 25's call3.sh (one displacement dimension less; a KL weight that
# rises): a larger KL weight on the latent split's displacement dimensions only (`--kl-displacement-scale S`, new in
# session 26; the amplitude dimensions keep --kl-weight). Nine 20-epoch runs at once, the three presets, seed 0,
# scored at 5, 10 and 20, on session 25's bases:
#  essfkd3:     essf (the amplitudes from the start, the encoder of the amplitudes stopped after epoch 5), S = 3
#  essfkd10:    the same, S = 10
#  essdf625kd3: essdf625 (the amplitudes after one epoch), S = 3
# Session 27 ran these three (its call1.sh and call2.sh, benchmarks/results/2026-12-07-s27-gpu/); this script now
# runs them through benchmarks/accuracy/gpu_issue17_call.sh (the screen's log s26c.log, its scores s26c.tgz).
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s26-gpu/call_kld.sh
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125"
bash benchmarks/accuracy/gpu_issue17_call.sh s26c "essfkd3:$E --kl-displacement-scale 3" \
  "essfkd10:$E --kl-displacement-scale 10" "essdf625kd3:$E --amplitude-start-steps 625 --kl-displacement-scale 3"
