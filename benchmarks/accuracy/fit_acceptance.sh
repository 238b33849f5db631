#!/usr/bin/env bash
# The fit acceptance: `fit` on 20,000 simulated particles of ONE adenylate-kinase state (frame 49; box 64,
# 2 Å/px, SNR 0.1, consensus low-passed to 8 Å) must reach FSC-AUC >= 0.35 and FSC 0.5 at <= 5 Å vs the truth.
#   bash benchmarks/accuracy/fit_acceptance.sh WORKDIR [FIT OPTIONS SETS ...]
# Each extra argument is one set of fit options (quoted), run into WORKDIR/fit_<i>; default: the fit defaults.
# Needs the bench extra (MDAnalysisTests). Prints one line per run from fit.json.
set -euo pipefail
WORK=${1:?usage: fit_acceptance.sh WORKDIR [FIT OPTIONS ...]}
shift
mkdir -p "$WORK"
if [ ! -f "$WORK/sim/particles.star" ]; then
  python - "$WORK/spec.yaml" <<'PY'
import sys
import yaml
w = [0.0] * 98
w[49] = 1.0
spec = {"preset": "adk", "frame_weights": w, "volume_bins": 1, "n_particles": 20000, "box": 64, "apix": 2.0,
        "snr": 0.1, "consensus_resolution_angstrom": 8.0, "seed": 4}
open(sys.argv[1], "w").write(yaml.safe_dump(spec))
PY
  python -m gaussianem simulate "$WORK/spec.yaml" -o "$WORK/sim"
fi
if [ ! -f "$WORK/dataset/dataset.json" ]; then
  python -m gaussianem preprocess "$WORK/sim/particles.star" -o "$WORK/dataset" --map "$WORK/sim/consensus.mrc"
fi
SETS=("$@")
[ ${#SETS[@]} -eq 0 ] && SETS=("")
i=0
for opts in "${SETS[@]}"; do
  out="$WORK/fit_$i"
  start=$(date +%s)
  # shellcheck disable=SC2086
  python -m gaussianem fit "$WORK/dataset" -o "$out" --reference "$WORK/sim/volumes/vol_000.mrc" --no-progress $opts
  end=$(date +%s)
  python - "$out/fit.json" "$opts" "$((end - start))" <<'PY'
import json
import sys
s = json.load(open(sys.argv[1]))
r = s["fsc_reference"]
print(f"FIT [{sys.argv[2] or 'defaults'}]: FSC-AUC {r['fsc_auc']:.3f}, FSC0.5 {r['resolution_0.5_angstrom']:.2f} A, "
      f"{s['n_gaussians']} Gaussians, {sys.argv[3]} s")
PY
  i=$((i + 1))
done
