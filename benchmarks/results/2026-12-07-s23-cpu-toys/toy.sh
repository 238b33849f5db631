#!/bin/bash
# Session 23: a toy of benchmarks/results/2026-12-06-s17-cpu-toys/make.sh (4,000 particles, box 64 -> 32), EPOCHS
# epochs, then `gaussianem benchmark` (50 scored images) at each of SCORE ("5 10 20" unless set). Runs in /tmp/t23.
# toy.sh PRESET NAME EPOCHS [train flags]
p=$1 n=$2 ep=$3; shift 3
export OMP_NUM_THREADS=1
G=/work/main/.venv/bin/gaussianem
$G train /tmp/toys/$p/dataset -o /tmp/t23/run_$n --epochs "$ep" --batch-size 32 --zdim 10 --seed 0 --device cpu \
  --no-progress --decoder control --n-control-points 128 --overwrite "$@" > /tmp/t23/train_$n.log 2>&1
for e in ${SCORE:-5 10 20}; do
  $G benchmark /tmp/t23/run_$n --truth /tmp/toys/$p/sim -o /tmp/t23/bench_${n}_e$e --epoch "$e" --n-images 50 \
    --seed 0 --device cpu --no-progress > /tmp/t23/bench_${n}_e$e.log 2>&1
done
echo done > /tmp/t23/done_$n
