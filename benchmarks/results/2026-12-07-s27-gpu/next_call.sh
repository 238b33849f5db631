#!/usr/bin/env bash
# Prepared in session 27 for the next session's first device call (issue 17): NOT RUN yet. Nine 20-epoch runs at
# once, the three presets, scored at 5, 10, 20 (about 550 s on an H100; timeout_s 600, carry .whl).
# Session 27 (README.md here): of six two-encoder settings only `essfkd10` (essf with --kl-displacement-scale 10)
# held per-image FSC-AUC at 20 on all three presets (seed 0: 0.362 / 0.386 / 0.383 against the defaults'
# 0.348 / 0.384 / 0.386), but its displacement dimensions stay asleep to epoch 5, so adk's motion lies in the
# amplitude dimensions (abs(ρ) 0.913 at 20 against cryoDRGN's 0.937) and the hinge comes late (0.509 at 5). With
# the amplitudes after one displacement-only epoch (essdf625), adk's motion goes to the displacements (0.939-0.943
# at 20). And essf's own displacement dimensions are awake at 5 with the hinge in (0.850), its FSC-AUC falling only
# after epoch 5. So:
#  essdf625kd10: essdf625 with --kl-displacement-scale 10
#  essfkd10l:    essf with --kl-displacement-scale 10 from step 3125 only (--kl-displacement-scale-start-steps,
#                new in session 27: epoch 5 is essf's, then the larger weight)
#  essfkd10_1:   essfkd10 on seed 1 (its FSC-AUC hold on a second seed)
# Afterwards: python benchmarks/accuracy/issue17_acceptance.py --setting "essfkd10=2026-12-07-s27-gpu/s27b:essfkd10,DIR:essfkd10_1" ...
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s27-gpu/next_call.sh
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125"
bash benchmarks/accuracy/gpu_issue17_call.sh s28a \
  "essdf625kd10:$E --amplitude-start-steps 625 --kl-displacement-scale 10" \
  "essfkd10l:$E --kl-displacement-scale 10 --kl-displacement-scale-start-steps 3125" \
  "essfkd10_1:$E --kl-displacement-scale 10 --seed 1"
