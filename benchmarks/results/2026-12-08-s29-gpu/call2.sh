#!/usr/bin/env bash
# Session 29's smaller device call (issue 17), NOT RUN (no machine was lent), for when only about 430 s of device time
# are left (next_call.sh no longer fits): the three whole-step CUDA-graph tests fixed in session 28 (in the background
# while the presets simulate, preprocess and fit; tests.log), and one variant on the three presets, scored at 5 and
# 20: essfkd10 (sessions 27-28, two seeds measured) with the amplitude encoder thawed for wsd's decay
# (--amplitude-encoder-thaw-steps 9375 of 12,500 steps). With the freeze alone the states' separation stays at its
# step-3125 value (tcr-mixed ARI 0.994 at 5 and at 20 on both seeds, short of 0.9992); does the thaw lift it, and at
# what per-image FSC-AUC (essfkd10 at 20: 0.362 / 0.363 adk, 0.386 / 0.385 tcr-compositional, 0.383 / 0.383
# tcr-mixed)? Run from the repository root on the device machine (carry .whl):  D=$OUT bash
# benchmarks/results/2026-12-08-s29-gpu/call2.sh
# Afterwards: python benchmarks/accuracy/issue17_acceptance.py --setting "essfkd10=2026-12-07-s27-gpu/s27b:essfkd10,2026-12-08-s28-gpu/s28a:essfkd10_1" --setting "essfkd10t=DIR/s29b:essfkd10t"
. benchmarks/gpu/gpu_env.sh; gpu_env
python -m pytest -q tests/test_train.py --tb=short --show-capture=no -p no:warnings -p no:logging \
  -k "test_cuda_graph_steps_match_eager_steps or test_whole_step_graph_with_a_displacement_kl_scale_from_a_later_step or test_whole_step_graph_with_a_partial_last_batch" \
  > "$D/tests.log" 2>&1 &
E="--encoder-split --amplitude-change signed --amplitude-encoder-freeze-steps 3125"
SCORE_EPOCHS=${SCORE_EPOCHS:-5} T_PRESET=${T_PRESET:-330} bash benchmarks/accuracy/gpu_issue17_call.sh s29b \
  "essfkd10t:$E --kl-displacement-scale 10 --amplitude-encoder-thaw-steps 9375"
wait
grep -E "^E |passed|failed" "$D/tests.log"
