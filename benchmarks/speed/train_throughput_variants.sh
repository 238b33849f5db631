#!/usr/bin/env bash
# Training-step throughput at the IgG-1D scale (6,000 Gaussians, box 128, zdim 10) on one GPU, for the step
# variants: eager, torch.compile, torch.compile + CUDA graphs (the default of `gaussianem train` on CUDA).
#   bash benchmarks/speed/train_throughput_variants.sh [BATCH ...]      (default: 32 64)
set -euo pipefail
cd "$(dirname "$0")/../.."
BATCHES=("${@:-32 64}")
# shellcheck disable=SC2206
BATCHES=(${BATCHES[*]})
for variant in "--no-compile" "--compile --no-cudagraphs" "--compile --cudagraphs"; do
  echo "## variant: $variant"
  # shellcheck disable=SC2086
  python benchmarks/speed/train_throughput.py --device cuda --batch-size "${BATCHES[@]}" $variant --steps 60 --warmup 15
done
