#!/bin/bash
# session 16: --readout-zero vectors against the default, tcr-compositional at the GPU runs' scale on the CPU
cd /tmp/gc
G=/work/main/.venv/bin/gaussianem
export OMP_NUM_THREADS=1
T="--batch-size 32 --zdim 10 --seed 0 --device cpu --no-progress"
rm -rf r16_b r16_uz
( time $G train ds15 -o r16_b --epochs 3 $T ) > s16_b.log 2>&1 &
( time $G train ds15 -o r16_uz --epochs 3 $T --readout-zero vectors ) > s16_uz.log 2>&1 &
wait
for r in r16_b r16_uz; do for e in 1 2 3; do
  $G benchmark $r --truth sim -o b16_${r}_$e --epoch $e --n-images 20 --seed 0 --device cpu --no-progress > b16_${r}_$e.log 2>&1
done & done
wait
echo done
