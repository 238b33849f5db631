#!/usr/bin/env bash
# Session 21, device call 2 (issue 17). Call 1: --lr-schedule wsd closed every 20-epoch gap on seed 0 (adk R² 0.883,
# tcr-compositional ARI 0.990, hinge 0.925; per-image FSC-AUC within 0.001); the read-out's learning rate moved
# nothing at 5. Here, 20 epochs on the three presets, scored at 5, 10 and 20:
# w20s1 / s1: wsd and the constant default on seed 1 (does the 20-epoch win hold on another seed?);
# w5: --epochs 5 --lr-schedule wsd (what a user who asks for 5 epochs would get from wsd as the default);
# esn: --encoder-split --amplitude-encoder-hidden 256 (the two encoders' sooner states, with a narrower amplitude
#      encoder that has less room to fit noise).
# Then the box-128 training step with the defaults and with esn's encoders, each alone on the GPU.
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s21-gpu/call2.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
S=benchmarks/accuracy/gpu_issue17_screen.sh
export EPOCHS=${EPOCHS:-20} CRYODRGN=0 SCORE_EPOCHS="5 10" T_PRESET=${T_PRESET:-420}
W17=/tmp/w21b OUT=/tmp/s21b PACK=$D/s21b.tgz CHAINS=4 \
  bash $S "w20s1:--lr-schedule wsd --seed 1" "s1:--seed 1" "w5:--epochs 5 --lr-schedule wsd" \
  "esn:--encoder-split --amplitude-encoder-hidden 256" > "$D/b.log" 2>&1
tail -n 50 "$D/b.log"
T=benchmarks/speed/train_throughput.py
A="--device cuda --box 128 --apix 1.8 --steps 40 --warmup 6 --batch-size 32 --gaussians 60000 --decoder control"
# shellcheck disable=SC2086
timeout 90 python $T $A --set displacement_dims=3 > "$D/speed_default.md" 2>&1
# shellcheck disable=SC2086
timeout 90 python $T $A --set displacement_dims=3 --set encoder_split=true --set amplitude_encoder_hidden=256 \
  > "$D/speed_esn.md" 2>&1
tail -n 3 "$D/speed_default.md" "$D/speed_esn.md"
