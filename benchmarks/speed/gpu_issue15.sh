#!/usr/bin/env bash
# One device call for issue 15: the CUDA tests of the splat kernels and the control-point decoder, then the
# decoder/projection micro-benchmark table (box 128, batch 32, G = 8k/30k/60k). Results under $OUT (or ./out).
set -o pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor-issue15}
python3 -m pytest --version || export PYTHONPATH="${PYTHONPATH}:$PWD/pylib"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
start=$(date +%s)
python3 -m pytest -q -rs -p no:cacheprovider tests/test_splat.py tests/test_control_decoder.py 2>&1 | tee "$OUT/tests.txt"
echo "tests: $(( $(date +%s) - start )) s"
python3 benchmarks/speed/decoder_projection.py --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
echo "bench: $(( $(date +%s) - start )) s"
python3 benchmarks/speed/decoder_projection.py --gaussians 60000 --skip-old-decoder --skip-compiled \
    --splat-precision ieee --splat-configs 16x32x4x256,16x16x4x128 --json "$OUT/bench_ieee.json" 2>&1 \
    | tee "$OUT/bench_ieee.txt"
python3 benchmarks/speed/decoder_projection.py --gaussians 60000 --skip-old-decoder --skip-compiled \
    --cutoff 4.0 --control-points 2048 --splat-configs 16x32x4x256 --json "$OUT/bench_c4_k2048.json" 2>&1 \
    | tee "$OUT/bench_c4_k2048.txt"
echo "total: $(( $(date +%s) - start )) s"
