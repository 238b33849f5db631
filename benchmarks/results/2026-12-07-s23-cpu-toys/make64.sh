#!/bin/bash
# Session 23: a box-64 toy (PRESET: 4,000 particles, box 64 kept, SNR 0.05, fit 2 epochs, the default cloud), nearer
# the GPU runs' scale than the box-32 toys of ../2026-12-06-s17-cpu-toys/make.sh. Writes /tmp/toys/PRESET64.
p=$1; d=/tmp/toys/${p}64; G=/work/main/.venv/bin/gaussianem
export OMP_NUM_THREADS=2
$G simulate --preset $p -o $d/sim --n-particles 4000 --box 64 --snr 0.05 --seed 0 --device cpu > $d.sim.log 2>&1 &&
$G preprocess $d/sim/particles.star --map $d/sim/consensus.mrc -o $d/dataset --device cpu > $d.pre.log 2>&1 &&
$G fit $d/dataset --epochs 2 --batch-size 32 --device cpu --no-progress > $d.fit.log 2>&1
echo "${p}64 done rc $?" >> /tmp/toys/done.log
