#!/bin/bash
# name epochs "ENV" flags...   (toy comp box 32, 4000 particles)
n=$1; E=$2; envs=$3; shift 3
D=/tmp/cpu17w/tcr-compositional
cd /tmp/t16
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/wt16/src
env $envs /work/main/.venv/bin/python -m gaussianem train $D/dataset -o run_$n --epochs $E --batch-size 32 --zdim 10 --seed 0 --device cpu --no-progress "$@" > train_$n.log 2>&1
for e in $(seq 2 2 $E); do
/work/main/.venv/bin/python -m gaussianem benchmark run_$n --truth $D/sim -o bench_${n}_e$e --epoch $e --n-images 100 --seed 0 --device cpu --no-progress > bench_${n}_e$e.log 2>&1
done
