#!/bin/bash
# NAME EPOCHS FLAGS...: run_any.sh on the tcr-compositional toy
exec "$(dirname "$0")/run_any.sh" /tmp/cpu17w/tcr-compositional "$@"
