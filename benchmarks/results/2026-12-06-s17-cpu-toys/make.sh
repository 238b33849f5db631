#!/bin/bash
# PRESET: 4000 particles, box 64 -> 32, fit 2 epochs
p=$1; d=/tmp/toys/$p; G=/work/main/.venv/bin/gaussianem
export OMP_NUM_THREADS=1
$G simulate --preset $p -o $d/sim --n-particles 4000 --box 64 --snr 0.05 --seed 0 --device cpu > $d.sim.log 2>&1 &&
$G preprocess $d/sim/particles.star --map $d/sim/consensus.mrc -o $d/dataset --box 32 --device cpu > $d.pre.log 2>&1 &&
$G fit $d/dataset --epochs 2 --batch-size 32 --device cpu --no-progress > $d.fit.log 2>&1
echo "$p done rc $?" >> /tmp/toys/done.log
