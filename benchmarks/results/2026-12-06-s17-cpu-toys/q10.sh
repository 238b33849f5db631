export TOY_DIR=/tmp/t17
/work/main/benchmarks/results/2026-12-06-s16-cpu-readout/run_any.sh /tmp/toys/tcr-compositional c_a188 6 --decoder control --n-control-points 128 --amplitude-start-steps 188 --split-release-steps 282
/work/main/benchmarks/results/2026-12-06-s16-cpu-readout/run_any.sh /tmp/toys/tcr-mixed m_a188s1 6 --decoder control --n-control-points 128 --amplitude-start-steps 188 --split-release-steps 282 --seed 1
