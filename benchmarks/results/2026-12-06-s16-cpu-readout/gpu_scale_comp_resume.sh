#!/bin/bash
# session 16: the same two runs resumed to epoch 5
cd /tmp/gc
G=/work/main/.venv/bin/gaussianem
export OMP_NUM_THREADS=1
( time $G train ds15 -o r16_b --resume --epochs 5 --no-progress ) > s16_b5.log 2>&1 &
( time $G train ds15 -o r16_uz --resume --epochs 5 --no-progress ) > s16_uz5.log 2>&1 &
wait
for r in r16_b r16_uz; do for e in 4 5; do
  $G benchmark $r --truth sim -o b16_${r}_$e --epoch $e --n-images 20 --seed 0 --device cpu --no-progress > b16_${r}_$e.log 2>&1
done & done
wait
echo done
