./run_any.sh /tmp/toys/tcr-compositional c_o3z 6 --decoder control --n-control-points 128 --displacement-dims 3 --amplitude-start-steps 250 --readout-control --split-release-steps 375
./run_any.sh /tmp/toys/tcr-mixed m_o3z 6 --decoder control --n-control-points 128 --displacement-dims 3 --amplitude-start-steps 250 --readout-control --split-release-steps 375
./run_any.sh /tmp/toys/tcr-compositional c_uzc 6 --decoder control --n-control-points 128 --encoder-centre
