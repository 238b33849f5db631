# shellcheck shell=bash
# Sourced by the benchmark scripts on the GPU machine (no internet): installs the wheels carried as .whl/
# (bash benchmarks/gpu/fetch_wheels.sh, here) into /tmp/site once per machine, then puts /tmp/site, the MDAnalysisTests
# stand-in .whl/mdatests and src/ on PYTHONPATH. Without .whl/ (or with INSTALL_WHEELS=0) only src/ is added.
# Uses ROOT (the repository root; default: the working directory) and PY (default python3); the install's output
# goes to GPU_ENV_LOG (default /dev/null). Returns non-zero when the install fails.
# Also defines gem (gaussianem from src/) and cryodrgn (one cryoDRGN command, see below).
gpu_env() {
  local root=${ROOT:-$PWD} py=${PY:-python3} rc=0
  if [ "${INSTALL_WHEELS:-auto}" != 0 ] && [ -d "$root/.whl" ] && ls "$root"/.whl/*.whl >/dev/null 2>&1; then
    if [ ! -f /tmp/site/.installed ]; then
      if "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
          "$root"/.whl/*.whl >"${GPU_ENV_LOG:-/dev/null}" 2>&1; then
        touch /tmp/site/.installed
      else
        rc=1
      fi
    fi
    export PYTHONPATH=/tmp/site:$root/.whl/mdatests:$root/src${PYTHONPATH:+:$PYTHONPATH}
  else
    export PYTHONPATH=$root/src${PYTHONPATH:+:$PYTHONPATH}
  fi
  export PYTHONUNBUFFERED=1
  return $rc
}

gem() { "${PY:-python3}" -m gaussianem "$@"; }
# cryoDRGN's own entry point imports every command module (its dashboard needs flask, plotly, ...): run the one
# command module asked for, exactly as the entry point would (its add_args + main)
CRYODRGN_RUNNER='import argparse, logging, sys
from importlib import import_module
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
cmd = sys.argv[1]
module = import_module("cryodrgn.commands." + cmd)
parser = argparse.ArgumentParser(prog="cryodrgn " + cmd)
module.add_args(parser)
module.main(parser.parse_args(sys.argv[2:]))'
cryodrgn() { "${PY:-python3}" -c "$CRYODRGN_RUNNER" "$@"; }
