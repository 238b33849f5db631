#!/usr/bin/env bash
# Session 25, device call 4 (issue 17; the ~300 s of device time left): which part of the latent takes in the KL
# that rises after epoch 5 on tcr-compositional with two encoders (`essdf625`: 19.5 -> 22.7 nats from epoch 5 to 20,
# the amplitude encoder stopped at 5; the default falls 19.0 -> 14.0)? The epoch records now log kl_amplitude (the
# KL of the split's amplitude dimensions; with --encoder-split the amplitude encoder's). Two runs at once, 10 epochs
# at a constant rate (the 20-epoch runs' rate until epoch 15), seed 0, no scoring (each cut at 115 s of training):
#  essdf625c: --encoder-split --amplitude-change signed --amplitude-start-steps 625 --amplitude-encoder-freeze-steps 3125
#  defc:      the defaults (one encoder, the latent split)
# Run from the repository root on the device machine: D=$OUT bash benchmarks/results/2026-12-07-s25-gpu/call4.sh
. benchmarks/gpu/gpu_env.sh; gpu_env
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
w=/tmp/w25d; rm -rf "$w"; mkdir -p "$w"
{ gem simulate --preset tcr-compositional -o "$w/sim" --n-particles 20000 --box 64 --snr 0.05 --seed 0 --device cuda &&
  gem preprocess "$w/sim/particles.star" --map "$w/sim/consensus.mrc" -o "$w/dataset" --device cuda &&
  gem fit "$w/dataset" --epochs 3 --batch-size 32 --device cuda --no-progress; } > "$D/prep.log" 2>&1 || exit 1
E="--encoder-split --amplitude-change signed --amplitude-start-steps 625 --amplitude-encoder-freeze-steps 3125"
run() {  # NAME FLAGS...
  local name=$1; shift
  timeout 115 python3 -m gaussianem train "$w/dataset" -o "$w/$name" --epochs 10 --batch-size 32 --zdim 10 --seed 0 \
    --device cuda --no-progress --lr-schedule constant "$@" > "$D/$name.train.log" 2>&1
  grep '"type": "epoch"' "$w/$name/log.jsonl" > "$D/$name.epochs.jsonl"
}
# shellcheck disable=SC2086
run essdf625c $E & run defc & wait
for f in "$D"/*.epochs.jsonl; do
  python3 -c "import json,sys; [print(sys.argv[1].split('/')[-1], r['epoch'], round(r['render'],5), round(r['kl'],2), round(r.get('kl_amplitude',-1),2)) for r in map(json.loads, open(sys.argv[1]))]" "$f"
done
