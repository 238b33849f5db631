#!/bin/bash
# wait for the toys, then the wsd runs at 6 epochs
while [ "$(grep -c done /tmp/toys/done.log 2>/dev/null)" != 2 ]; do sleep 20; done
export TOY_DIR=/tmp/t18
R=/work/main/benchmarks/results/2026-12-06-s16-cpu-readout/run_any.sh
$R /tmp/toys/tcr-compositional c_w6 6 --decoder control --n-control-points 128 --lr-schedule wsd &
$R /tmp/toys/tcr-mixed m_w6 6 --decoder control --n-control-points 128 --lr-schedule wsd &
wait
