#!/bin/bash
# session 15: does opening the split (o3) give tcr-compositional its FSC-AUC back by epoch 5? CPU, GPU-scale data
set -x
cd /tmp/gc
G=/work/main/.venv/bin/gaussianem
export OMP_NUM_THREADS=2
F="--displacement-dims 3 --amplitude-start-steps 1250 --readout-control"
T="--batch-size 32 --zdim 10 --seed 0 --device cpu --no-progress"
rm -rf ds15 && cp -r dataset ds15 && rm -f ds15/.gaussianem.lock
( time $G fit ds15 --epochs 1 --batch-size 32 --device cpu --no-progress ) > s15_fit.log 2>&1 || exit 1
( time $G train ds15 -o r15_split --epochs 3 $T $F ) > s15_split3.log 2>&1 || exit 1
rm -rf r15_open && cp -r r15_split r15_open
export OMP_NUM_THREADS=1
( time $G train ds15 -o r15_split --resume --epochs 5 ) > s15_split5.log 2>&1 &
( time $G train ds15 -o r15_open --resume --epochs 5 --split-release-steps 1875 ) > s15_open5.log 2>&1 &
wait
for r in r15_split r15_open; do
  $G benchmark $r --truth sim -o b15_${r}_5 --epoch 5 --n-images 20 --seed 0 --device cpu --no-progress > b15_$r.log 2>&1 &
done
wait
echo done
# then, the open branch again after a CLI fix: OMP_NUM_THREADS=2 gaussianem train ds15 -o r15_open --resume --epochs 5 --split-release-steps 1875; gaussianem benchmark r15_open --truth sim -o b15_r15_open_5 --epoch 5 --n-images 20 --seed 0 --device cpu
