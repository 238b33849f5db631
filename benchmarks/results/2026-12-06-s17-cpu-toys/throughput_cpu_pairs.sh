B="/work/main/.venv/bin/python /work/main/benchmarks/speed/train_throughput.py --device cpu --box 64 --apix 3 --gaussians 5000 --steps 12 --warmup 3"
OFF="--set displacement_dims=0 --set readout_control=false --set encoder_centre=false"
for i in 1 2; do
OMP_NUM_THREADS=2 $B | tail -1 | sed 's/^/split /' >> /tmp/tp_pairs.txt
OMP_NUM_THREADS=2 $B $OFF | tail -1 | sed 's/^/nosplit /' >> /tmp/tp_pairs.txt
done
