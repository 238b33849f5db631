#!/bin/bash
# Session 22: the tcr-mixed toy of benchmarks/results/2026-12-06-s17-cpu-toys/make.sh, 20 epochs, then
# `gaussianem benchmark` at epochs 5, 10 and 20. Runs in /tmp/t22.
# mix.sh NAME FLAGS...: tcr-mixed toy, 20 epochs, benchmark at 5 10 20
n=$1; shift
export OMP_NUM_THREADS=1
G=/work/main/.venv/bin/gaussianem
$G train /tmp/toys/tcr-mixed/dataset -o /tmp/t22/mrun_$n --epochs 20 --batch-size 32 --zdim 10 --seed 0 --device cpu --no-progress --decoder control --n-control-points 128 --overwrite "$@" > /tmp/t22/mtrain_$n.log 2>&1
for e in 5 10 20; do $G benchmark /tmp/t22/mrun_$n --truth /tmp/toys/tcr-mixed/sim -o /tmp/t22/mbench_${n}_e$e --epoch $e --n-images 50 --seed 0 --device cpu --no-progress > /tmp/t22/mbench_${n}_e$e.log 2>&1; done
echo done > /tmp/t22/mdone_$n
