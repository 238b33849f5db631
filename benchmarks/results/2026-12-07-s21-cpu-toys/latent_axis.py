"""Where the states sit in an amplitude latent (session 21 diagnostic, CPU toy):

    python benchmarks/results/2026-12-07-s21-cpu-toys/latent_axis.py RUN_DIR EPOCH SIM_DIR [DISPLACEMENT_DIMS]

k-means ARI on all of z, on the displacement dimensions and on the amplitude dimensions; a 5-fold logistic state
probe; the amplitude dimensions' PCA (the share of PC1), each state's mean and spread along PC1, and within each
state the Spearman correlation of PC1 with the particle's mean defocus.
"""

import sys

import numpy as np
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from gaussianem.evaluation.metrics import kmeans_ari

run, epoch, sim = sys.argv[1], int(sys.argv[2]), sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 3
truth = np.load(f"{sim}/truth.npz")
state = truth["state"]
defocus = (truth["defocus_u_angstrom"] + truth["defocus_v_angstrom"]) / 2
z = np.load(f"{run}/z.{epoch}.npy")
ari = [kmeans_ari(part, state)["ari"] for part in (z, z[:, :n], z[:, n:])]
probe = cross_val_score(LogisticRegression(max_iter=3000), z, state, cv=5).mean()
print(f"k-means ARI: all {ari[0]:.3f}, displacement dims {ari[1]:.3f}, amplitude dims {ari[2]:.3f}; "
      f"state probe {probe:.3f}")
pca = PCA().fit(z[:, n:])
pc1 = pca.transform(z[:, n:])[:, 0]
print(f"amplitude dims: PC1 holds {pca.explained_variance_ratio_[0]:.3f} of the variance")
print("| state | mean on PC1 | sd on PC1 | Spearman ρ(PC1, defocus) within the state |")
print("| ---: | ---: | ---: | ---: |")
for k in np.unique(state):
    m = state == k
    print(f"| {k} | {pc1[m].mean():.2f} | {pc1[m].std():.2f} | {spearmanr(pc1[m], defocus[m])[0]:.2f} |")
