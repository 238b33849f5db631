#!/usr/bin/env bash
# One device call of issue 17's screen (gpu_issue17_screen.sh): the variants on the three presets, GaussianEM only,
# 20-epoch runs scored at 5, 10 and 20, in three parallel chains per preset (nine runs ≈ 550 s on an H100). The
# scored folder is packed into $D/TAG.tgz as each run is scored (a call cut by its limit still returns it), the
# screen's log is $D/TAG.log and the card's name $D/gpu.txt. From the repository root on the device machine:
#   D=$OUT bash benchmarks/accuracy/gpu_issue17_call.sh TAG "NAME:FLAGS" ...
# A variant's flags may end with --seed S. Environment as gpu_issue17_screen.sh's; here EPOCHS=20 CRYODRGN=0
# SCORE_EPOCHS="5 10" CHAINS=3 T_PRESET=585 unless set. Afterwards, here: tar xzf TAG.tgz into a results folder and
# python benchmarks/accuracy/issue17_acceptance.py --setting "NAME=DIR:VARIANT[,DIR:VARIANT]" ...
. benchmarks/gpu/gpu_env.sh; gpu_env
tag=${1:?usage: D=OUT gpu_issue17_call.sh TAG NAME:FLAGS ...}; shift
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$D/gpu.txt"
export EPOCHS=${EPOCHS:-20} CRYODRGN=${CRYODRGN:-0} SCORE_EPOCHS=${SCORE_EPOCHS:-5 10} T_PRESET=${T_PRESET:-585}
W17=/tmp/w-$tag OUT=/tmp/$tag PACK=$D/$tag.tgz CHAINS=${CHAINS:-3} \
  bash benchmarks/accuracy/gpu_issue17_screen.sh "$@" > "$D/$tag.log" 2>&1
tail -n 60 "$D/$tag.log"
