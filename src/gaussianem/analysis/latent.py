"""Latent-space analysis: k-means with real particles as centres, PCA trajectories, UMAP, and plots."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaussianem.io.writes import atomic_path

log = logging.getLogger(__name__)

MINIBATCH_ABOVE = 20_000  # particles: above this k-means uses MiniBatchKMeans


@dataclass
class KMeansResult:
    """labels (N,) int, centers (K, zdim) = z of the nearest real particle to each centre, centers_ind (K,),
    raw_centers (K, zdim) the k-means centroids."""

    labels: np.ndarray
    centers: np.ndarray
    centers_ind: np.ndarray
    raw_centers: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.centers))


def kmeans(z: np.ndarray, k: int, seed: int = 0) -> KMeansResult:
    """k-means on z (N, zdim); each centre is replaced by the nearest real particle (its own class's member).

    Exact KMeans up to ``MINIBATCH_ABOVE`` particles, MiniBatchKMeans beyond. Classes are ordered by the first
    principal coordinate of their centres so that repeated runs and neighbouring classes read naturally.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    z = np.asarray(z, np.float64)
    n = len(z)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"k-means with K={k} needs at least {k} particles, got {n}")
    if n > MINIBATCH_ABOVE:
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096, max_iter=200)
    else:
        km = KMeans(n_clusters=k, random_state=seed, n_init=10)
    from threadpoolctl import threadpool_limits

    # small problems: one thread (OpenMP spin-waiting on a busy machine costs seconds for a few hundred points)
    with threadpool_limits(limits=1 if n <= MINIBATCH_ABOVE else None):
        labels = km.fit_predict(z)
    raw = km.cluster_centers_
    # order classes along the main axis of the centres (stable, reproducible numbering)
    if k > 1:
        c = raw - raw.mean(0)
        axis = np.linalg.svd(c, full_matrices=False)[2][0]
        axis = axis * np.sign(axis[np.argmax(np.abs(axis))])
        order = np.argsort(c @ axis, kind="stable")
        remap = np.empty(k, int)
        remap[order] = np.arange(k)
        labels, raw = remap[labels], raw[order]
    ind = np.empty(k, np.int64)
    for j in range(k):
        members = np.flatnonzero(labels == j)
        if len(members) == 0:  # cannot happen for sklearn's k-means, but keep the contract
            members = np.arange(n)
        d = ((z[members] - raw[j]) ** 2).sum(1)
        ind[j] = members[np.argmin(d)]
    return KMeansResult(labels.astype(np.int64), z[ind].copy(), ind, raw)


def pca_fit(z: np.ndarray):
    """sklearn PCA fitted on z (N, zdim) (all components)."""
    from sklearn.decomposition import PCA

    return PCA(n_components=min(z.shape[1], len(z))).fit(np.asarray(z, np.float64))


def pc_trajectory(
    z: np.ndarray, pca, dim: int, n_points: int = 10, lo_percentile: float = 5.0, hi_percentile: float = 95.0,
) -> np.ndarray:
    """Latent points along PC ``dim`` (1-based): ``n_points`` evenly from the ``lo`` to the ``hi`` percentile of
    the particles' PC scores, the other PCs at 0 (the mean) -> (n_points, zdim)."""
    if not 1 <= dim <= pca.n_components_:
        raise ValueError(f"PC{dim} does not exist (zdim {pca.n_components_})")
    scores = pca.transform(np.asarray(z, np.float64))[:, dim - 1]
    lo, hi = np.percentile(scores, [lo_percentile, hi_percentile])
    pc = np.zeros((n_points, pca.n_components_))
    pc[:, dim - 1] = np.linspace(lo, hi, n_points)
    return pca.inverse_transform(pc)


def umap_embedding(z: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """UMAP of z (N, zdim) -> (N, 2), or None (logged) when ``umap-learn`` is not installed."""
    try:
        import umap  # noqa: PLC0415
    except ImportError:
        log.info("umap-learn is not installed (pip install 'gaussianem[analysis]'): UMAP skipped, PCA used instead")
        return None
    reducer = umap.UMAP(n_components=2, random_state=seed, n_jobs=1)
    return np.asarray(reducer.fit_transform(np.asarray(z, np.float32)), np.float64)


# ------------------------------------------------------------------------------------------------------ plots
def _figure_to_png(fig, path: Path | None) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return data


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_scatter_classes(
    emb: np.ndarray, labels: np.ndarray, centers_ind: np.ndarray, title: str, xlabel: str, ylabel: str,
    path: Path | None = None, max_points: int = 50_000, seed: int = 0,
) -> bytes:
    """2-D embedding (N, 2) coloured by class, class centres (real particles) numbered -> PNG bytes."""
    plt = _plt()
    n = len(emb)
    sel = np.random.default_rng(seed).choice(n, max_points, replace=False) if n > max_points else np.arange(n)
    k = int(labels.max()) + 1 if len(labels) else 1
    cmap = plt.get_cmap("tab20" if k <= 20 else "turbo", k)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(emb[sel, 0], emb[sel, 1], c=labels[sel], cmap=cmap, vmin=-0.5, vmax=k - 0.5, s=3, alpha=0.6,
               linewidths=0, rasterized=True)
    for j, i in enumerate(centers_ind):
        ax.annotate(str(j), emb[i], fontsize=8, ha="center", va="center", weight="bold",
                    bbox={"boxstyle": "circle,pad=0.15", "fc": "white", "ec": cmap(j), "alpha": 0.85})
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _figure_to_png(fig, path)


def plot_latent_histograms(z: np.ndarray, path: Path | None = None, max_dims: int = 16) -> bytes:
    """One histogram per latent dimension -> PNG bytes."""
    plt = _plt()
    d = min(z.shape[1], max_dims)
    cols = min(d, 4)
    rows = -(-d // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.2 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i < d:
            ax.hist(z[:, i], bins=60, color="#4477aa")
            ax.set_title(f"z{i + 1}", fontsize=9)
            ax.tick_params(labelsize=7)
        else:
            ax.axis("off")
    fig.tight_layout()
    return _figure_to_png(fig, path)


def plot_class_counts(counts: np.ndarray, path: Path | None = None) -> bytes:
    """Bar chart of particles per class -> PNG bytes."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(counts) + 1), 3))
    ax.bar(np.arange(len(counts)), counts, color="#4477aa")
    ax.set_xticks(np.arange(len(counts)))
    ax.set_xlabel("class")
    ax.set_ylabel("particles")
    ax.tick_params(labelsize=7)
    return _figure_to_png(fig, path)


def plot_pca_variance(pca, path: Path | None = None) -> bytes:
    """Explained variance ratio per PC -> PNG bytes."""
    plt = _plt()
    r = pca.explained_variance_ratio_
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(np.arange(1, len(r) + 1), r, color="#4477aa")
    ax.set_xlabel("PC")
    ax.set_ylabel("explained variance ratio")
    return _figure_to_png(fig, path)
