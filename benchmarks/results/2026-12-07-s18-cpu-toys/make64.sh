#!/bin/bash
d=/tmp/toys20/tcr-mixed; G=/work/main/.venv/bin/gaussianem
$G preprocess $d/sim/particles.star --map $d/sim/consensus.mrc -o $d/dataset64 --device cpu > $d.pre64.log 2>&1 &&
$G fit $d/dataset64 --epochs 3 --batch-size 32 --device cpu --no-progress > $d.fit64.log 2>&1
echo "done64 rc $?" >> /tmp/toys20/done.log
