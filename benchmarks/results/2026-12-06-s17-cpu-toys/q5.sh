export OMP_NUM_THREADS=1
/work/main/.venv/bin/python -m gaussianem train /tmp/toys/tcr-mixed/dataset -o run_m_def20 --epochs 20 --batch-size 32 --zdim 10 --seed 0 --device cpu --no-progress --decoder control --n-control-points 128 > train_m_def20.log 2>&1
echo done > q5.done
