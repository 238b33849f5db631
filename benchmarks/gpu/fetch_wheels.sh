#!/usr/bin/env bash
# Fetch, on a machine with PyPI, everything the side-by-side benchmark (compare_cryodrgn.sh) needs on a GPU machine
# that has Python 3.12 + torch + numpy/scipy/scikit-learn/pandas/matplotlib/seaborn/pyyaml/tqdm but no internet:
#   .whl/                 py3.12 manylinux x86-64 wheels, fetched with --no-deps (one version of each)
#   .whl/mdatests/        a tiny stand-in for the MDAnalysisTests package holding only the data files the
#                         presets read (adk.psf, adk_dims.dcd, mmcif/1BD2.cif.gz); MDAnalysisTests itself is a
#                         100+ MiB sdist and cannot travel. Built from an installed MDAnalysisTests (pip installs it
#                         here when missing).
# On the GPU machine (carry .whl):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD/.whl/mdatests:$PWD/src
# compare_cryodrgn.sh does this itself when it finds .whl/.
#
# cryoDRGN 4.3.1's Requires-Dist and what the commands used here (parse_star, train_vae --no-analysis, eval_vol)
# import:
#   needed and already on the GPU image: torch, numpy, scipy, scikit-learn, pandas, pyyaml, matplotlib, seaborn
#   needed, fetched here: igraph (+ texttable), nbformat (+ fastjsonschema, jsonschema, jsonschema-specifications,
#     referencing, rpds-py, traitlets, jupyter-core) -- imported at module level by train_vae through analyze
#   starfile: in Requires-Dist and needed by GaussianEM too; fetched
#   not needed by these commands (imported lazily or only by analysis/dashboard commands): healpy, umap-learn,
#     flask, jupyterlab, notebook, ipywidgets, plotly, anywidget. cryoDRGN's `cryodrgn` entry point imports every
#     command module (the dashboard's flask too), so compare_cryodrgn.sh runs the command modules directly.
# GaussianEM's own needs missing there: mrcfile, starfile (+ pyarrow, typing-extensions: on the image), gemmi,
#   plyfile, MDAnalysis (+ GridDataFormats, mmtf-python, mda-xdrlib; msgpack, filelock, joblib, threadpoolctl: on
#   the image) for the adk preset.
# typing-extensions: referencing (jsonschema) needs TypeVar(default=) on Python 3.12; a recent one is carried so that
#   an older copy on the image cannot break the import (checked here: the carried set imports under Python 3.12.1).
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=.whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || grep -qx '/.whl/' .gitignore || echo '/.whl/' >> .git/info/exclude
mkdir -p "$DEST"

WHEELS=(
  cryodrgn==4.3.1
  igraph==1.0.0 texttable==1.7.2
  nbformat==5.11.1 fastjsonschema==2.22.3 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
  referencing==0.37.0 rpds-py==2026.9.1 traitlets==5.16.1 jupyter-core==5.9.1
  starfile==0.5.13 mrcfile==1.5.4 gemmi==0.7.5 plyfile==1.1.5
  MDAnalysis==2.11.0 GridDataFormats==1.2.0 mmtf-python==1.1.3 mda-xdrlib==0.2.0
  typing-extensions==4.15.0
)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
for w in "${WHEELS[@]}"; do
  echo "fetch_wheels: $w"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$DEST" "$w"
done

# the MDAnalysisTests stand-in: only the data files the presets use
python3 - "$DEST/mdatests" <<'EOF'
import importlib.util, shutil, subprocess, sys
from pathlib import Path

if importlib.util.find_spec("MDAnalysisTests") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "MDAnalysisTests"])
import MDAnalysisTests.datafiles as d

src = Path(d.__file__).parent / "data"
pkg = Path(sys.argv[1]) / "MDAnalysisTests"
(pkg / "data" / "mmcif").mkdir(parents=True, exist_ok=True)
for name in ("adk.psf", "adk_dims.dcd", "adk_closed.pdb", "adk_open.pdb", "mmcif/1BD2.cif.gz"):
    shutil.copyfile(src / name, pkg / "data" / name)
(pkg / "__init__.py").write_text('"""Stand-in for MDAnalysisTests: the data files of the GaussianEM presets only."""\n')
(pkg / "datafiles.py").write_text(
    "from pathlib import Path\n\n"
    "_DATA = Path(__file__).parent / 'data'\n"
    "PSF = str(_DATA / 'adk.psf')\n"
    "DCD = str(_DATA / 'adk_dims.dcd')\n"
    "PDB_closed = str(_DATA / 'adk_closed.pdb')\n"
    "PDB_small = str(_DATA / 'adk_open.pdb')\n"
)
print(f"fetch_wheels: MDAnalysisTests stand-in in {pkg}")
EOF
du -sh "$DEST"
ls "$DEST"
