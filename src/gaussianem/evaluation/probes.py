"""Linear probes: is the ground truth *in* z, whether or not it dominates z's geometry?

k-means ARI and Spearman ρ of a principal component ask whether the heterogeneity is the *largest* structure of
the latent space. A latent space can carry a state perfectly in a low-variance direction and still give a low ARI
(k-means splits along the larger motion instead). The probes tell "absent" from "hidden":

- **State accuracy**: multinomial logistic regression on standardised z, 5-fold stratified cross-validation; each
  particle's class is predicted by a fit that never saw it. Reported with the chance level (the majority
  fraction).
- **Motion R²**: ridge regression (small penalty) of the continuous truth coordinate on standardised z, 5-fold
  cross-validation, out-of-fold R² (1 - SSE / SST over all particles; 0 = no better than the mean).

Both are computed on at most ``max_particles`` particles (a fixed random subset) to bound their cost.
:func:`kmeans_ari` is the clustering measure beside them.
"""

from __future__ import annotations

import numpy as np


def _subset(n: int, max_particles: int, seed: int) -> np.ndarray:
    if n <= max_particles:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:max_particles])


def state_probe(z: np.ndarray, state: np.ndarray, n_folds: int = 5, seed: int = 0,
                max_particles: int = 20_000) -> dict:
    """Out-of-fold accuracy of a multinomial logistic probe of the discrete state from z.

    z (N, zdim), state (N,) int. Returns ``accuracy``, ``chance`` (majority fraction), ``k`` (states), ``n``; the
    accuracy is None when there are fewer than 2 states or a state has fewer members than ``n_folds``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = _subset(len(z), max_particles, seed)
    zz, st = np.asarray(z, np.float64)[rows], np.asarray(state)[rows]
    values, counts = np.unique(st, return_counts=True)
    out = {"k": int(len(values)), "n": int(len(st)), "accuracy": None,
           "chance": float(counts.max() / counts.sum()) if len(st) else None}
    if len(values) < 2 or counts.min() < n_folds:
        return out
    pred = np.empty_like(st)
    for train, test in StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(zz, st):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=10.0, max_iter=2000))
        pred[test] = probe.fit(zz[train], st[train]).predict(zz[test])
    out["accuracy"] = float(np.mean(pred == st))
    return out


def motion_probe(z: np.ndarray, coordinate: np.ndarray, n_folds: int = 5, seed: int = 0,
                 max_particles: int = 20_000) -> dict:
    """Out-of-fold R² of a ridge probe of the continuous coordinate from z (NaN coordinates are left out).

    z (N, zdim), coordinate (N,). Returns ``r2`` and ``n``; r2 is None when the coordinate is absent or constant.
    """
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = np.flatnonzero(np.isfinite(np.asarray(coordinate, np.float64)))
    keep = keep[_subset(len(keep), max_particles, seed)]
    zz, c = np.asarray(z, np.float64)[keep], np.asarray(coordinate, np.float64)[keep]
    if len(c) < max(10, n_folds) or np.std(c) == 0:
        return {"r2": None, "n": int(len(c))}
    pred = np.empty_like(c)
    for train, test in KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(zz):
        pred[test] = make_pipeline(StandardScaler(), Ridge(alpha=1e-3)).fit(zz[train], c[train]).predict(zz[test])
    r2 = 1.0 - float(((pred - c) ** 2).sum() / ((c - c.mean()) ** 2).sum())
    return {"r2": r2, "n": int(len(c))}


def kmeans_ari(z: np.ndarray, state: np.ndarray, seed: int = 0, max_states: int = 50) -> dict:
    """Adjusted Rand index of k-means on z (K = number of distinct states) vs the ground-truth states.

    None when there are fewer than 2 or more than ``max_states`` states (then states are not clusters).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    k = int(len(np.unique(state)))
    if k < 2 or k > max_states:
        return {"k": k, "ari": None}
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(np.asarray(z, dtype=np.float64))
    return {"k": k, "ari": float(adjusted_rand_score(state, labels))}


def probes_by_group(z: np.ndarray, state: np.ndarray, coordinate: np.ndarray, split: int = 0) -> list[dict]:
    """The probes on groups of z's dimensions: with ``0 < split < zdim`` the first ``split`` (a ``--displacement-dims``
    run's displacement dimensions), the others (its amplitude dimensions), then all of z; else all of z alone.

    z (N, zdim), state (N,) int, coordinate (N,). Returns one dict per group: ``group`` (a name), ``state`` (probe
    accuracy), ``motion`` (R²), ``within`` (the motion R² within each state, averaged over the states where it is
    defined; None if none), ``kmeans`` (the k-means ARI on the group: whether the states are its largest structure)
    and ``sd`` (zdim_group,), the standard deviation of z along each of its dimensions.
    """
    z, state = np.asarray(z, np.float64), np.asarray(state)
    coordinate = np.asarray(coordinate, np.float64)
    groups = [("all", slice(None))]
    if 0 < split < z.shape[1]:
        groups = [(f"0:{split} (displacements)", slice(0, split)),
                  (f"{split}:{z.shape[1]} (amplitudes)", slice(split, None))] + groups
    out = []
    for name, cols in groups:
        zz = z[:, cols]
        within = [motion_probe(zz[state == s], coordinate[state == s])["r2"] for s in np.unique(state)]
        within = [r for r in within if r is not None]
        out.append({"group": name, "state": state_probe(zz, state)["accuracy"],
                    "motion": motion_probe(zz, coordinate)["r2"],
                    "within": float(np.mean(within)) if within else None, "kmeans": kmeans_ari(zz, state)["ari"],
                    "sd": zz.std(axis=0)})
    return out
