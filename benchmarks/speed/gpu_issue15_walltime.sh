#!/usr/bin/env bash
# Device call (issue 15): the wall time of a whole 20-epoch training run at box 128, GaussianEM against cryoDRGN,
# each tool alone on the GPU, one after the other, on the same simulated particles (no scoring: accuracy is
# gpu_issue15_box128.sh's). The times are of the commands as a user runs them: start-up, compilation (a cold
# inductor cache unless the machine has run GaussianEM before), every epoch's latents and checkpoint.
#   OUT=out bash benchmarks/speed/gpu_issue15_walltime.sh
# Environment: PRESET=adk N_PARTICLES=20000 EPOCHS=20 BATCH=32 ZDIM=10 SNR=0.05 APIX=1.8 FIT_EPOCHS=0 (0: train
# from preprocess's initial cloud; the training cost does not depend on the fit) T_STEP=400 (seconds per command)
# BOX=128 DEVICE=cuda.
# Sizing on an H200: simulate ≈ 40 s, preprocess ≈ 30 s, GaussianEM ≈ 1 min, cryoDRGN ≈ 20 × N / 1,200 s (330 s at
# 20,000 particles).
# shellcheck source=benchmarks/speed/issue15_common.sh
. benchmarks/speed/issue15_common.sh
PRESET=${PRESET:-adk} N=${N_PARTICLES:-20000} EPOCHS=${EPOCHS:-20} BATCH=${BATCH:-32} ZDIM=${ZDIM:-10}
SNR=${SNR:-0.05} APIX=${APIX:-1.8} FIT_EPOCHS=${FIT_EPOCHS:-0} T_STEP=${T_STEP:-400} BOX=${BOX:-128}
DEVICE=${DEVICE:-cuda}
W=/tmp/walltime
export -f gem cryodrgn  # (shell functions of gpu_env.sh: timeout runs them through bash)
export PY CRYODRGN_RUNNER
rm -rf "$W"; mkdir -p "$W"
timed() {  # name, command...: runs it, prints and records its wall seconds
  local name=$1 t0 rc; shift
  t0=$(date +%s.%N)
  timeout "$T_STEP" bash -c '"$@"' _ "$@" > "$OUT/$name.log" 2>&1; rc=$?
  local s; s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  echo "$name: exit $rc in $s s" | tee -a "$OUT/walltime.txt"
  eval "WALL_${name//-/_}=$s"
  return $rc
}
timed simulate gem simulate --preset "$PRESET" -o "$W/sim" --n-particles "$N" --box "$BOX" --apix "$APIX" --snr "$SNR" \
    --seed 0 --device "$DEVICE" || exit 1
timed preprocess gem preprocess "$W/sim/particles.star" --map "$W/sim/consensus.mrc" -o "$W/dataset" \
    --device "$DEVICE" || exit 1
if [ "$FIT_EPOCHS" -gt 0 ]; then
  timed fit gem fit "$W/dataset" --epochs "$FIT_EPOCHS" --batch-size "$BATCH" --device "$DEVICE" --no-progress || exit 1
fi
timed gaussianem gem train "$W/dataset" -o "$W/gaussianem" --epochs "$EPOCHS" --batch-size "$BATCH" --zdim "$ZDIM" \
    --seed 0 --device "$DEVICE" --no-progress
grep -h "epoch [0-9]*:" "$OUT/gaussianem.log" | sed -n '1p;$p'
mkdir -p "$W/cryodrgn"
timed parse_star cryodrgn parse_star "$W/sim/particles.star" --ctf "$W/cryodrgn/ctf.pkl" --poses "$W/cryodrgn/pose.pkl"
timed cryodrgn cryodrgn train_vae "$W/sim/particles.mrcs" --poses "$W/cryodrgn/pose.pkl" --ctf "$W/cryodrgn/ctf.pkl" \
    --zdim "$ZDIM" -n "$EPOCHS" -b "$BATCH" --seed 0 -o "$W/cryodrgn/train" --no-analysis
grep -h "Finished in" "$OUT/cryodrgn.log" | tail -1
python3 - "$W/gaussianem/log.jsonl" "${WALL_gaussianem:-nan}" "${WALL_cryodrgn:-nan}" "$N" "$EPOCHS" <<'PY' | tee -a "$OUT/walltime.txt"
import json, sys
log, ours, theirs, n, epochs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
recs = [json.loads(x) for x in open(log)] if ours == ours else []
ep = [r for r in recs if r.get("type") == "epoch"]
su = next((r for r in recs if r.get("type") == "setup"), {})
setup = su.get("seconds", float("nan"))
print("set-up by part (s): " + ", ".join(f"{k} {su[k]}" for k in ("config_s", "model_s", "stepper_s", "particles_s")
                                          if k in su))
outs = [r for r in recs if r.get("type") == "epoch_outputs"]
print(f"| particles | epochs | GaussianEM wall s | of which set-up s | first steps s (compile, capture) | "
      f"steps s | epoch outputs s | cryoDRGN wall s | ratio |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
steps = sum(r["seconds"] for r in ep)
warm = ep[0]["warmup_s"] if ep else float("nan")
eo = sum(r["evaluate_s"] + r["save_s"] + r["plot_s"] for r in outs)
print(f"| {n:,} | {epochs} | {ours:.1f} | {setup:.1f} | {warm:.1f} | {steps:.1f} | {eo:.1f} | {theirs:.1f} | "
      f"{theirs / ours:.1f}× |")
print(f"outside train(): {ours - setup - steps - eo:.1f} s (start-up, imports, exit); per epoch: "
      + ", ".join(f"{r['epoch']}: {r['seconds']:.2f}" for r in ep))
print("epoch outputs (evaluate/save/plot s): " + ", ".join(
    f"{r['evaluate_s']:.2f}/{r['save_s']:.2f}/{r['plot_s']:.2f}" for r in outs))
PY
