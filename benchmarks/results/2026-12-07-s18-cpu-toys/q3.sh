#!/bin/bash
# GPU-scale on the CPU: tcr-mixed, 20,000 particles, box 64 (6,077 Gaussians, the control-point decoder), the
# defaults against --kl-warmup-steps 1250, 2 epochs (the displacement-only phase), scored after each epoch
while ! grep -q done64 /tmp/toys20/done.log 2>/dev/null; do sleep 20; done
cd /tmp/t18; export OMP_NUM_THREADS=1
P=/work/main/.venv/bin/python; D=/tmp/toys20/tcr-mixed
for v in "base:" "kw1:--kl-warmup-steps 1250"; do
  n=mx64_${v%%:*}; f=${v#*:}
  # shellcheck disable=SC2086
  $P -m gaussianem train $D/dataset64 -o run_$n --epochs 2 --batch-size 32 --zdim 10 --seed 0 --device cpu --no-progress $f > train_$n.log 2>&1 &
done
wait
for n in mx64_base mx64_kw1; do for e in 1 2; do
  $P -m gaussianem benchmark run_$n --truth $D/sim -o bench_${n}_e$e --epoch $e --n-images 50 --seed 0 --device cpu --no-progress > bench_${n}_e$e.log 2>&1 &
done; wait; done
