#!/bin/bash
# DATASET_DIR NAME EPOCHS FLAGS...: train on the toy in DATASET_DIR (dataset/, sim/), score every second epoch
D=$1; n=$2; E=$3; shift 3
cd "${TOY_DIR:-/tmp/t16}"  # the toy runs' folder (session 17: TOY_DIR=/tmp/t17)
export OMP_NUM_THREADS=1
/work/main/.venv/bin/python -m gaussianem train $D/dataset -o run_$n --epochs $E --batch-size 32 --zdim 10 --seed 0 --device cpu --no-progress "$@" > train_$n.log 2>&1
for e in $(seq 2 2 $E); do
/work/main/.venv/bin/python -m gaussianem benchmark run_$n --truth $D/sim -o bench_${n}_e$e --epoch $e --n-images 100 --seed 0 --device cpu --no-progress > bench_${n}_e$e.log 2>&1
done
