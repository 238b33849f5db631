# shellcheck shell=bash
# Sourced by gpu_issue15b.sh and gpu_issue15c.sh (in the repository root, on the device): $OUT, the inductor cache,
# stamp (seconds since the start), the test dependencies (.whl/ here or one level up, through gpu_env) and
# cuda_tests (the kernel = reference tests, then the whole-step CUDA-graph tests with the old and the new paths).
set -o pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor-15b}
start=$(date +%s)
stamp() { echo "== $1: $(( $(date +%s) - start )) s"; }
[ -d .whl ] || { [ -d ../.whl ] && ln -s ../.whl .whl; }
ROOT=$PWD
# shellcheck source=benchmarks/gpu/gpu_env.sh
. benchmarks/gpu/gpu_env.sh
gpu_env || echo "installing .whl/ failed" >&2
stamp "gpu_env"

cuda_tests() {
  timeout "${T_TESTS:-100}" python3 -m pytest -q -rs -p no:cacheprovider tests/test_splat.py \
      tests/test_control_decoder.py 2>&1 | tee "$OUT/tests_kernels.txt"
  stamp "kernel tests"
  timeout "${T_GRAPH:-150}" python3 -m pytest -q -rs -p no:cacheprovider tests/test_train.py \
      -k "control_decoder_and_splat or cuda_graph_steps_match or centred_encoder" 2>&1 | tee "$OUT/tests_graph.txt"
  stamp "graph tests"
}

# summarise_runs WORK_ROOT FOLDER...: for each pipeline folder of compare_cryodrgn.sh's results, its finished and failed
# steps, its metrics table, the first and last epoch lines of GaussianEM's training and cryoDRGN's closing lines
# (from WORK_ROOT/<folder name>/)
summarise_runs() {
  local work=$1 f w; shift
  for f in "$@"; do
    echo "## $f"; grep -h "done\|FAIL\|fail\|timed out" "$f"/bench.log 2>/dev/null | sed 's/^/  /' | tail -12
    cat "$f"/*.metrics.md 2>/dev/null
    w=$work/$(basename "$f")
    grep -h "epoch [0-9]*:" "$w"/*/logs/train_gaussianem.log 2>/dev/null | sed -n '1p;$p' | sed 's/^/  /'
    grep -h "Finished in\|Total time" "$w"/*/logs/train_cryodrgn.log 2>/dev/null | tail -2 | sed 's/^/  /'
  done
}
