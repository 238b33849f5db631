export TOY_DIR=/tmp/t17
/work/main/benchmarks/results/2026-12-06-s16-cpu-readout/run_any.sh /tmp/toys/adk a_d4 6 --decoder control --n-control-points 128 --displacement-dims 4
/work/main/benchmarks/results/2026-12-06-s16-cpu-readout/run_any.sh /tmp/toys/tcr-mixed m_d4 6 --decoder control --n-control-points 128 --displacement-dims 4
/work/main/benchmarks/results/2026-12-06-s16-cpu-readout/run_any.sh /tmp/toys/tcr-compositional c_d4 6 --decoder control --n-control-points 128 --displacement-dims 4
