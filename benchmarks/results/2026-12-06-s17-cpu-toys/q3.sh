./run_any.sh /tmp/toys/adk a_uz 6 --decoder control --n-control-points 128
./run_any.sh /tmp/toys/adk a_o3zc 6 --decoder control --n-control-points 128 --displacement-dims 3 --amplitude-start-steps 250 --readout-control --split-release-steps 375 --encoder-centre
