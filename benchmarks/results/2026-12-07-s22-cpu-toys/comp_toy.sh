#!/bin/bash
# Session 22: the tcr-compositional toy of benchmarks/results/2026-12-06-s17-cpu-toys/make.sh, 6 epochs, then
# session 21's latent_axis.py at epochs 3-6 (axis_NAME.md). Runs in /tmp/t22.
# run.sh NAME [flags]: 6-epoch tcr-compositional toy, then latent_axis at 4,5,6
name=$1; shift
export OMP_NUM_THREADS=1
G=/work/main/.venv/bin/gaussianem
$G train /tmp/toys/tcr-compositional/dataset -o /tmp/t22/run_$name --epochs 6 --batch-size 32 --zdim 10 --seed 0 --device cpu --no-progress --decoder control --n-control-points 128 --overwrite "$@" > /tmp/t22/train_$name.log 2>&1
for e in 3 4 5 6; do echo "epoch $e"; /work/main/.venv/bin/python /work/main/benchmarks/results/2026-12-07-s21-cpu-toys/latent_axis.py /tmp/t22/run_$name $e /tmp/toys/tcr-compositional/sim 2>/dev/null; done > /tmp/t22/axis_$name.md
echo done > /tmp/t22/done_$name
