#!/bin/bash
# Session 23: the box-64 toy of make64.sh with the GPU runs' settings (the default decoder and cloud), EPOCHS epochs,
# then `gaussianem benchmark` (50 scored images) and change_budget.py at each of SCORE ("5 10" unless set).
# Runs in /tmp/t23. toy64.sh PRESET NAME EPOCHS [train flags]
p=$1 n=$2 ep=$3; shift 3
export OMP_NUM_THREADS=1
G=/work/main/.venv/bin/gaussianem
$G train /tmp/toys/${p}64/dataset -o /tmp/t23/run_$n --epochs "$ep" --batch-size 32 --zdim 10 --seed 0 --device cpu \
  --no-progress --overwrite "$@" > /tmp/t23/train_$n.log 2>&1
for e in ${SCORE:-5 10}; do
  $G benchmark /tmp/t23/run_$n --truth /tmp/toys/${p}64/sim -o /tmp/t23/bench_${n}_e$e --epoch "$e" --n-images 50 \
    --seed 0 --device cpu --no-progress > /tmp/t23/bench_${n}_e$e.log 2>&1
  /work/main/.venv/bin/python /work/main/benchmarks/results/2026-12-07-s23-cpu-toys/change_budget.py /tmp/t23/run_$n \
    "$e" >> /tmp/t23/budget_$n.md 2>/dev/null
done
echo done > /tmp/t23/done_$n
