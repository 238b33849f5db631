#!/bin/bash
p=tcr-mixed; d=/tmp/toys20/$p; G=/work/main/.venv/bin/gaussianem
$G simulate --preset $p -o $d/sim --n-particles 20000 --box 64 --snr 0.05 --seed 0 --device cpu > $d.sim.log 2>&1 &&
$G preprocess $d/sim/particles.star --map $d/sim/consensus.mrc -o $d/dataset --box 32 --device cpu > $d.pre.log 2>&1 &&
$G fit $d/dataset --epochs 2 --batch-size 32 --device cpu --no-progress > $d.fit.log 2>&1
echo "done rc $?" >> /tmp/toys20/done.log
