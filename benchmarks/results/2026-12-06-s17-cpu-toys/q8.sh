export TOY_DIR=/tmp/t17
/work/main/benchmarks/results/2026-12-06-s16-cpu-readout/run_any.sh /tmp/toys/adk a_r250 6 --decoder control --n-control-points 128 --split-release-steps 250
/work/main/benchmarks/results/2026-12-06-s16-cpu-readout/run_any.sh /tmp/toys/tcr-mixed m_r250 6 --decoder control --n-control-points 128 --split-release-steps 250
/work/main/benchmarks/results/2026-12-06-s16-cpu-readout/run_any.sh /tmp/toys/tcr-compositional c_r250 6 --decoder control --n-control-points 128 --split-release-steps 250
