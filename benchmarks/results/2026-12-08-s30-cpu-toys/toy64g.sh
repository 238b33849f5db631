#!/bin/bash
# Session 30: session 23's box-64 adk toy (../2026-12-07-s23-cpu-toys/make64.sh adk: 4,000 particles, box 64, SNR
# 0.05, fit 2 epochs, the default cloud; 125 steps per epoch at batch 32, a fifth of the GPU runs' 625) trained on one
# core for EPOCHS epochs, then at each epoch of SCORE ("5 10" unless set) `gaussianem benchmark` (50 scored images) and
# benchmarks/accuracy/latent_groups.py (where the motion lies: the displacement or the amplitude part of z).
# Runs in /tmp/t30. toy64g.sh PRESET NAME EPOCHS [train flags]
p=$1 n=$2 ep=$3; shift 3
export OMP_NUM_THREADS=1
W=/tmp/t30; G=/work/main/.venv/bin/gaussianem; PY=/work/main/.venv/bin/python
$G train /tmp/toys/${p}64/dataset -o $W/run_$n --epochs "$ep" --batch-size 32 --zdim 10 --seed 0 --device cpu \
  --no-progress --overwrite "$@" > $W/train_$n.log 2>&1
for e in ${SCORE:-5 10}; do
  $G benchmark $W/run_$n --truth /tmp/toys/${p}64/sim -o $W/bench_${n}_e$e --epoch "$e" --n-images 50 \
    --seed 0 --device cpu --no-progress > $W/bench_${n}_e$e.log 2>&1
  $PY /work/main/benchmarks/accuracy/latent_groups.py $W/run_$n /tmp/toys/${p}64/sim --epochs "$e" \
    > $W/groups_${n}_e$e.md 2>&1
done
echo done > $W/done_$n
