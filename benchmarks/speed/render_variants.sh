#!/usr/bin/env bash
# GPU: render throughput eager vs compiled (the default on CUDA), with the CUDA tests of the forward model.
set -u
python3 -m pytest -q tests/test_projection.py tests/test_ctf.py tests/test_fourier_fsc.py tests/test_rotation.py tests/test_gaussians.py 2>&1 | tail -3
GAUSSIANEM_COMPILE=0 python3 benchmarks/speed/render.py --device cuda --iters 30 2>&1 | tail -7
python3 benchmarks/speed/render.py --device cuda --iters 30 2>&1 | tail -7
python3 benchmarks/speed/render.py --device cuda --iters 30 --batch 256 2>&1 | tail -7
