"""k-means ARI and a 5-fold logistic state probe for every epoch's latent of a cryoDRGN run (z.E.pkl, read by
GaussianEM's safe pickle reader), against a simulation's states (session 21, CPU toy):

    python benchmarks/results/2026-12-07-s21-cpu-toys/cryodrgn_latent.py CRYODRGN_TRAIN_DIR SIM_DIR
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from gaussianem.evaluation.metrics import kmeans_ari
from gaussianem.io.pickles import load_pickle

state = np.load(f"{sys.argv[2]}/truth.npz")["state"]
print("| epoch | k-means ARI | state probe |\n| ---: | ---: | ---: |")
for path in sorted(Path(sys.argv[1]).glob("z.*.pkl"), key=lambda p: int(p.name.split(".")[1])):
    z = np.asarray(load_pickle(path))
    probe = cross_val_score(LogisticRegression(max_iter=3000), z, state, cv=5).mean()
    print(f"| {path.name.split('.')[1]} | {kmeans_ari(z, state)['ari']:.3f} | {probe:.3f} |")
