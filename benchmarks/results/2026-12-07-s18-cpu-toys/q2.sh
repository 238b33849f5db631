#!/bin/bash
export TOY_DIR=/tmp/t18
R=/work/main/benchmarks/results/2026-12-06-s16-cpu-readout/run_any.sh
$R /tmp/toys20/tcr-mixed M_base 4 --decoder control --n-control-points 128 &
$R /tmp/toys20/tcr-mixed M_kw1 4 --decoder control --n-control-points 128 --kl-warmup-steps 1250 &
wait
