"""Accuracy metrics against the simulator's ground truth, shared by GaussianEM and by any other tool's outputs.

Definitions (they are what ``gaussianem benchmark`` reports; keep them stable, results files cite them):

- **FSC-AUC** (CryoBench): the FSC of two volumes in 1-voxel shells (:func:`gaussianem.physics.fsc.fsc`), both
  multiplied by one soft spherical mask first, then the trapezoidal area under ``|FSC|`` over frequency
  ``arange(D/2)/D`` (:func:`gaussianem.physics.fsc.fsc_auc`). Identical volumes give
  ``(D/2 - 1)/D`` ≈ 0.48 at D = 64; unrelated ones give ≈ 0.
- **Per-image FSC-AUC**: for each of a fixed random subset of particles (:func:`select_particles`), the volume a
  tool generates at that particle's latent z against the ground-truth volume of that particle
  (``truth.npz['volume_index']`` -> ``volumes/vol_XXX.mrc``); mean, median and standard deviation over the subset.
- **Per-state FSC-AUC**: one group per ground-truth volume (conformation); the mean z of the group's particles,
  replaced by the z of the nearest real particle (so the volume is on the data manifold), against that volume.
- **Spearman |ρ|** against the continuous truth ``coordinate``: of PC1 of z; the best over all PCs and all raw
  latent axes (optimistic: picked on the data); and of a linear-regression direction predicted out-of-fold by
  k-fold cross-validation (honest: each particle's prediction comes from a fit that never saw it).
- **ARI**: adjusted Rand index of k-means on z (K = number of ground-truth states, 10 restarts) vs ``state``.
- **State accuracy** and **motion R²**: 5-fold linear probes of the state and of the coordinate from z
  (:mod:`gaussianem.evaluation.probes`): is the truth in z at all, even where it is not z's largest structure.
- **Neighbourhood similarity** (k nearest neighbours, on a random subset of particles): for each query particle,
  the fraction of its k nearest neighbours in latent space (Euclidean) that are also among its k nearest in
  ground-truth space, where ground-truth distance is ``|Δcoordinate|`` between particles of one state and
  infinite between states; ties at the k-th ground-truth distance are all counted as neighbours (so a purely
  discrete truth asks "same state?"). Reported with the chance level (the expected fraction for random
  neighbours).
- **Consensus baseline**: the per-image FSC-AUC a single map would get (the same subset, the same mask).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor
from tqdm import tqdm

from gaussianem.errors import InputError
from gaussianem.evaluation.probes import kmeans_ari, motion_probe, state_probe
from gaussianem.io.checks import load_error
from gaussianem.io.mrc import read_volume
from gaussianem.physics.fourier import fourier_crop, soft_circular_mask
from gaussianem.physics.fsc import fsc, fsc_auc
from gaussianem.progress import bar_disabled

log = logging.getLogger(__name__)

TRUTH_FILE = "truth.npz"
VOLUMES_DIR = "volumes"
SIMULATION_FILE = "simulation.json"
CONSENSUS_FILE = "consensus.mrc"


# ----------------------------------------------------------------------------------------------------------------
# ground truth


@dataclass
class Truth:
    """The simulator's ground truth: per-particle labels (N,) and the ground-truth volumes, loaded on demand."""

    root: Path
    state: np.ndarray  # (N,) int
    coordinate: np.ndarray  # (N,) float (NaN where undefined)
    volume_index: np.ndarray  # (N,) int
    spec: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return int(self.state.shape[0])

    def volume_path(self, index: int) -> Path:
        return self.root / VOLUMES_DIR / f"vol_{int(index):03d}.mrc"

    def volume(self, index: int) -> tuple[np.ndarray, float]:
        """Ground-truth volume ``index`` -> ((D, D, D) float32 ``[z, y, x]``, voxel size Å); cached."""
        index = int(index)
        if index not in self._cache:
            path = self.volume_path(index)
            if not path.is_file():
                raise InputError(f"{self.root}: ground-truth volume {path.name} (volume_index {index}) is missing")
            vol, apix, _ = read_volume(path)
            self._cache[index] = (vol, apix)
        return self._cache[index]

    def grid(self) -> tuple[int, float]:
        """(box size, voxel size Å) of the ground-truth volumes (read from the first one)."""
        vol, apix = self.volume(int(self.volume_index[0]))
        return int(vol.shape[-1]), float(apix)

    def consensus_path(self) -> Path | None:
        path = self.root / CONSENSUS_FILE
        return path if path.is_file() else None


def load_truth(simdir: str | Path) -> Truth:
    """Open a simulator output folder (``truth.npz``, ``volumes/``, ``simulation.json``)."""

    root = Path(simdir)
    path = root / TRUTH_FILE
    if not path.is_file():
        raise InputError(f"{root} is not a simulator output folder (no {TRUTH_FILE}); run 'gaussianem simulate'")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("state", "volume_index") if k not in f.files]
            if missing:
                raise InputError(f"{path}: lacks {missing}")
            state = np.asarray(f["state"]).astype(np.int64).ravel()
            volume_index = np.asarray(f["volume_index"]).astype(np.int64).ravel()
            coordinate = (np.asarray(f["coordinate"], dtype=np.float64).ravel() if "coordinate" in f.files
                          else np.full(state.shape, np.nan))
    except InputError:
        raise
    except Exception as exc:  # truncated, foreign, object arrays: one line naming the file
        raise InputError(f"{path}: damaged or not a truth file ({load_error(exc)})") from None
    if not (len(state) == len(volume_index) == len(coordinate)):
        raise InputError(f"{path}: state, coordinate and volume_index differ in length")
    spec = {}
    if (root / SIMULATION_FILE).is_file():
        from gaussianem.io.dataset import read_json

        spec = read_json(root / SIMULATION_FILE)
    return Truth(root=root, state=state, coordinate=coordinate, volume_index=volume_index, spec=spec)


def select_particles(n_total: int, n_images: int, seed: int = 0, available: np.ndarray | None = None) -> np.ndarray:
    """A fixed random subset of ground-truth rows, sorted: the same for every tool scored with the same seed.

    ``available`` (M,) lists the truth rows a tool has latents for (None = all); the subset is the first
    ``n_images`` of one seeded permutation of all ``n_total`` rows that are available, so two tools trained on the
    whole set get exactly the same particles.
    """
    perm = np.random.default_rng(seed).permutation(n_total)
    if available is not None:
        ok = np.zeros(n_total, dtype=bool)
        ok[np.asarray(available, dtype=np.int64)] = True
        perm = perm[ok[perm]]
    return np.sort(perm[: max(0, n_images)])


# ----------------------------------------------------------------------------------------------------------------
# FSC-AUC


def spherical_mask(box_size: int, radius_fraction: float = 0.85, edge_fraction: float = 0.1,
                   device: torch.device | str = "cpu") -> Tensor:
    """Soft spherical mask (D, D, D) float64: 1 inside ``radius_fraction·D/2``, cosine edge of ``edge_fraction``."""
    return soft_circular_mask(box_size, radius_fraction, edge_fraction, ndim=3, device=device, dtype=torch.float64)


def match_box(volume: Tensor, box_size: int) -> Tensor:
    """Fourier-crop a volume (D, D, D) to the comparison box (D' <= D, same physical extent)."""
    size = volume.shape[-1]
    if size == box_size:
        return volume
    if size < box_size:
        raise InputError(f"volume box {size} is smaller than the comparison box {box_size}")
    return fourier_crop(volume, box_size, ndim=3)


def fsc_auc_pair(volume: Tensor, reference: Tensor, mask: Tensor | None) -> float:
    """Masked CryoBench FSC-AUC of two volumes (D, D, D)."""
    return fsc_auc(fsc(volume, reference, mask), volume.shape[-1])


class TruthVolumes:
    """Ground-truth volumes as tensors on one device, at the comparison box (cached)."""

    def __init__(self, truth: Truth, box_size: int, device: torch.device | str = "cpu") -> None:
        self.truth = truth
        self.box_size = box_size
        self.device = torch.device(device)
        self._cache: dict[int, Tensor] = {}

    def __call__(self, index: int) -> Tensor:
        index = int(index)
        if index not in self._cache:
            vol, apix = self.truth.volume(index)
            t = torch.as_tensor(vol, dtype=torch.float64, device=self.device)
            self._cache[index] = match_box(t, self.box_size)
        return self._cache[index]


def summarize(values: np.ndarray) -> dict:
    """mean / median / std / min / max / n of a 1-D array (floats, JSON-ready)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "mean": None, "median": None, "std": None, "min": None, "max": None}
    return {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)), "std": float(v.std()),
            "min": float(v.min()), "max": float(v.max())}


def fsc_auc_series(volumes: Iterable[Tensor], reference_indices: np.ndarray, truth_volumes: TruthVolumes,
                   mask: Tensor | None, desc: str = "FSC-AUC") -> np.ndarray:
    """FSC-AUC of each generated volume (D, D, D) against ground-truth volume ``reference_indices[i]`` -> (n,)."""
    out = np.empty(len(reference_indices), dtype=np.float64)
    it = iter(volumes)
    for i, ref in enumerate(tqdm(reference_indices, desc=desc, unit="vol", leave=False, disable=bar_disabled())):
        try:
            vol = next(it)
        except StopIteration as exc:
            raise InputError(f"{desc}: got {i} volumes for {len(reference_indices)} references") from exc
        vol = match_box(vol.to(device=truth_volumes.device, dtype=torch.float64), truth_volumes.box_size)
        out[i] = fsc_auc_pair(vol, truth_volumes(int(ref)), mask)
    return out


def consensus_fsc_auc(consensus: Tensor, reference_indices: np.ndarray, truth_volumes: TruthVolumes,
                      mask: Tensor | None) -> np.ndarray:
    """FSC-AUC of one map (D, D, D) against each particle's ground truth -> (n,) (one FSC per distinct volume)."""
    consensus = match_box(consensus.to(device=truth_volumes.device, dtype=torch.float64), truth_volumes.box_size)
    values = {int(k): fsc_auc_pair(consensus, truth_volumes(int(k)), mask) for k in np.unique(reference_indices)}
    return np.array([values[int(k)] for k in reference_indices], dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------------
# per-state latents


def state_groups(volume_index: np.ndarray, max_states: int = 100) -> np.ndarray:
    """Distinct ground-truth volumes to score per state: all of them, or the ``max_states`` most populous."""
    values, counts = np.unique(volume_index, return_counts=True)
    if len(values) > max_states:
        keep = np.argsort(-counts, kind="stable")[:max_states]
        values = np.sort(values[keep])
    return values


def state_latents(z: np.ndarray, volume_index: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each group (a ground-truth volume): the mean z of its particles, replaced by the nearest real particle.

    z (N, zdim); volume_index (N,); groups (S,) -> (z_state (S, zdim), particle row (S,) in z's rows).
    """
    from sklearn.neighbors import NearestNeighbors

    means = np.stack([z[volume_index == g].mean(0) for g in groups])
    nn = NearestNeighbors(n_neighbors=1).fit(z)
    _, idx = nn.kneighbors(means)
    rows = idx[:, 0]
    return z[rows], rows


# ----------------------------------------------------------------------------------------------------------------
# latent-space metrics


def _abs_spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    rho = spearmanr(a, b).statistic
    return float(abs(rho)) if np.isfinite(rho) else 0.0


def spearman_metrics(z: np.ndarray, coordinate: np.ndarray, n_folds: int = 5, seed: int = 0) -> dict:
    """|Spearman ρ| between latent directions and a continuous truth (NaN coordinates are left out).

    z (N, zdim), coordinate (N,). Returns ``pc1``, ``best_pc`` / ``best_pc_index``, ``best_axis`` /
    ``best_axis_index``, ``best`` (max of PCs and axes), ``linear_cv`` (out-of-fold linear regression), ``n``;
    all None when the coordinate is absent or constant.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import KFold

    keep = np.isfinite(coordinate)
    empty = {"n": int(keep.sum()), "pc1": None, "best_pc": None, "best_pc_index": None, "best_axis": None,
             "best_axis_index": None, "best": None, "linear_cv": None}
    if keep.sum() < max(10, n_folds) or np.std(coordinate[keep]) == 0:
        return empty
    zz, c = np.asarray(z[keep], dtype=np.float64), coordinate[keep]
    pcs = PCA(n_components=min(zz.shape[1], zz.shape[0])).fit_transform(zz)
    rho_pc = [_abs_spearman(pcs[:, i], c) for i in range(pcs.shape[1])]
    rho_ax = [_abs_spearman(zz[:, i], c) for i in range(zz.shape[1])]
    pred = np.empty_like(c)
    for train, test in KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(zz):
        pred[test] = LinearRegression().fit(zz[train], c[train]).predict(zz[test])
    return {
        "n": int(keep.sum()),
        "pc1": rho_pc[0],
        "best_pc": float(max(rho_pc)),
        "best_pc_index": int(np.argmax(rho_pc)) + 1,
        "best_axis": float(max(rho_ax)),
        "best_axis_index": int(np.argmax(rho_ax)),
        "best": float(max(max(rho_pc), max(rho_ax))),
        "linear_cv": _abs_spearman(pred, c),
    }


def neighbourhood_similarity(z: np.ndarray, state: np.ndarray, coordinate: np.ndarray, k: int = 20,
                             n_sample: int = 5000, seed: int = 0, chunk: int = 512) -> dict:
    """Fraction of latent k-nearest neighbours that are ground-truth neighbours (see the module docstring).

    z (N, zdim), state (N,), coordinate (N,) (NaN = no coordinate, treated as 0). Computed on a random subset of
    ``n_sample`` particles (all of them when fewer). Returns ``similarity``, ``chance``, ``k``, ``n``.
    """
    from sklearn.neighbors import NearestNeighbors

    n = len(z)
    rows = np.sort(np.random.default_rng(seed).permutation(n)[: min(n, n_sample)])
    m = len(rows)
    k = int(min(k, m - 1))
    if k < 1:
        return {"similarity": None, "chance": None, "k": k, "n": m}
    zz = np.asarray(z[rows], dtype=np.float64)
    st = np.asarray(state[rows])
    co = np.nan_to_num(np.asarray(coordinate[rows], dtype=np.float64), nan=0.0)
    _, nbr = NearestNeighbors(n_neighbors=k + 1).fit(zz).kneighbors(zz)
    hits = np.empty(m)
    sizes = np.empty(m)
    for start in range(0, m, chunk):
        q = np.arange(start, min(m, start + chunk))
        d = np.abs(co[q, None] - co[None, :])
        d[st[q, None] != st[None, :]] = np.inf
        d[q - start, q] = -1.0  # self: excluded below
        kth = np.partition(d, k, axis=1)[:, k]  # k-th smallest among the others (index 0 is self)
        within = d <= kth[:, None]
        within[q - start, q] = False
        sizes[q] = within.sum(1)
        for j, i in enumerate(q):
            others = nbr[i][nbr[i] != i][:k]
            hits[i] = within[j, others].sum()
    return {"similarity": float(np.mean(hits / k)), "chance": float(np.mean(sizes / (m - 1))), "k": k, "n": m}


def latent_metrics(z: np.ndarray, state: np.ndarray, coordinate: np.ndarray, seed: int = 0, k: int = 20,
                   n_sample: int = 5000) -> dict:
    """All latent-space metrics of z (N, zdim) against aligned truth labels (N,)."""
    z = np.asarray(z, dtype=np.float64)
    if not np.isfinite(z).all():
        raise InputError(f"the latents hold {int((~np.isfinite(z)).sum())} non-finite values")
    return {
        "spearman": spearman_metrics(z, coordinate, seed=seed),
        "kmeans": kmeans_ari(z, state, seed=seed),
        "state_probe": state_probe(z, state, seed=seed),
        "motion_probe": motion_probe(z, coordinate, seed=seed),
        "neighbourhood": neighbourhood_similarity(z, state, coordinate, k=k, n_sample=n_sample, seed=seed),
    }


# ----------------------------------------------------------------------------------------------------------------
# the full score of one tool


VolumeGenerator = Callable[[np.ndarray, np.ndarray], Iterator[Tensor]]
"""(z rows (n,), z values (n, zdim)) -> an iterator of n volumes (D', D', D') in the truth frame."""


@dataclass
class ScoreConfig:
    n_images: int = 1000
    seed: int = 0
    mask_radius_fraction: float = 0.85
    mask_edge_fraction: float = 0.1
    max_states: int = 100
    knn_k: int = 20
    knn_sample: int = 5000


def score(
    z: np.ndarray,
    truth_rows: np.ndarray,
    truth: Truth,
    particle_volumes: VolumeGenerator,
    state_volumes: VolumeGenerator | None = None,
    consensus: dict[str, Tensor] | None = None,
    config: ScoreConfig | None = None,
    device: torch.device | str = "cpu",
    box_size: int | None = None,
    per_state: bool = True,
) -> dict:
    """Score one tool: latents z (M, zdim) of the truth rows ``truth_rows`` (M,), and its volume generators.

    ``particle_volumes(rows, z_rows)`` yields the tool's volume at each selected particle; ``state_volumes``
    (default: the same generator) yields volumes at the per-state latents (skipped when ``per_state`` is False).
    ``consensus`` maps a label to a single map (D, D, D) for the consensus baseline. Volumes are compared at
    ``box_size`` (default: the ground truth's; larger volumes are Fourier-cropped to it). Returns the metrics dict
    (JSON-ready) including the per-particle and per-state values.
    """
    cfg = config or ScoreConfig()
    z = np.asarray(z)
    truth_rows = np.asarray(truth_rows, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(truth_rows):
        raise InputError(f"latents of shape {z.shape} do not match {len(truth_rows)} particles")
    if truth_rows.size and (truth_rows.min() < 0 or truth_rows.max() >= truth.n):
        raise InputError(f"particle rows exceed the ground truth's {truth.n} particles")
    state = truth.state[truth_rows]
    coordinate = truth.coordinate[truth_rows]
    volume_index = truth.volume_index[truth_rows]
    box = box_size or truth.grid()[0]
    tv = TruthVolumes(truth, box, device)
    mask = spherical_mask(box, cfg.mask_radius_fraction, cfg.mask_edge_fraction, device=tv.device)

    # per-image FSC-AUC on a fixed subset (selected in truth-row space so all tools share it)
    selected = select_particles(truth.n, cfg.n_images, cfg.seed, available=truth_rows)
    pos = np.full(truth.n, -1, dtype=np.int64)
    pos[truth_rows] = np.arange(len(truth_rows))
    rows = pos[selected]
    if len(rows) < cfg.n_images:
        log.warning("only %d particles available for per-image FSC-AUC (asked for %d)", len(rows), cfg.n_images)
    per_image = fsc_auc_series(particle_volumes(rows, z[rows]), volume_index[rows], tv, mask, desc="per-image FSC")

    # per-state FSC-AUC
    groups = state_groups(volume_index, cfg.max_states)
    z_state, state_rows = state_latents(z, volume_index, groups)
    if per_state:
        gen = state_volumes or particle_volumes
        state_auc = fsc_auc_series(gen(state_rows, z_state), groups, tv, mask, desc="per-state FSC")
    else:
        state_auc = np.empty(0)

    result = {
        "n_particles": int(len(z)),
        "zdim": int(z.shape[1]),
        "box_size": int(box),
        "per_image_fsc_auc": summarize(per_image),
        "per_state_fsc_auc": summarize(state_auc),
        "fsc_auc_max": fsc_auc(np.ones(box // 2), box),
        "latent": latent_metrics(z, state, coordinate, seed=cfg.seed, k=cfg.knn_k, n_sample=cfg.knn_sample),
        "consensus_fsc_auc": {},
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "per_image": {"truth_row": selected.tolist(), "fsc_auc": per_image.tolist()},
        "per_state": {"volume_index": groups.tolist(), "truth_row": truth_rows[state_rows].tolist(),
                      "fsc_auc": state_auc.tolist()},
    }
    for label, vol in (consensus or {}).items():
        vol = match_box(vol.to(device=tv.device, dtype=torch.float64), box)
        result["consensus_fsc_auc"][label] = summarize(consensus_fsc_auc(vol, volume_index[rows], tv, mask))
    return result
