#!/usr/bin/env bash
# Prepared in session 28 for the next session's first device call (issue 17): NOT RUN yet. Nine 20-epoch runs at
# once, the three presets, scored at 5, 10, 20 (about 560 s on an H100; timeout_s 600, carry .whl).
# Session 28 (README.md here): essfkd10 held per-image FSC-AUC on a second seed and meets 11 of 19 points on both
# seeds (the defaults 8), but adk's motion lies in its amplitude dimensions on both seeds (the displacement part's
# motion R² 0.10 at 20), so a warped atomic model would not move; with kd10 from step 3125 only (essfkd10l) or with
# one displacement-only epoch (essdf625kd10) it still does. In essdf625 without kd (session 25), adk's motion goes to
# the displacements by epoch 5 (their motion R² 0.80, the amplitude part's 0.20), and the amplitude encoder is frozen
# from then on, so the scale from step 3125 should quiet the spare displacement dimensions, not move the motion. So essdf625 with kd10 from step 3125 only, on two seeds, and the same with the
# amplitudes after two epochs (essdf: session 25's best adk FSC-AUC with the freeze):
#  essdf625kd10l:   --amplitude-start-steps 625 --kl-displacement-scale 10 --kl-displacement-scale-start-steps 3125
#  essdf625kd10l_1: the same, seed 1
#  essdfkd10l:      --amplitude-start-steps 1250 and the same scale from step 3125
# Afterwards: python benchmarks/accuracy/issue17_acceptance.py --setting "essdf625kd10l=DIR/s29c:essdf625kd10l,DIR/s29c:essdf625kd10l_1" --setting "essdfkd10l=DIR/s29c:essdfkd10l"
# and look where adk's motion lies: grep displacements DIR/s29c/adk/*.e20.groups.md (motion R² of the part).
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-08-s28-gpu/next_call.sh
# On the same warm machine right after (session 28 fixed these three tests and could not re-run them):
#   . benchmarks/gpu/gpu_env.sh; gpu_env; python -m pytest -q tests/test_train.py -k graph -p no:logging
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125"
L="--kl-displacement-scale 10 --kl-displacement-scale-start-steps 3125"
bash benchmarks/accuracy/gpu_issue17_call.sh s29c \
  "essdf625kd10l:$E --amplitude-start-steps 625 $L" \
  "essdf625kd10l_1:$E --amplitude-start-steps 625 $L --seed 1" \
  "essdfkd10l:$E --amplitude-start-steps 1250 $L"
