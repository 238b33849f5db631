"""The non-browser half of ``gaussianem view``: one trained run held in memory, and what the page asks of it.

The model is loaded once (CPU by default) and the Gaussian embedding, which does not depend on z, is computed
once; a click then costs one decoder pass for one latent point. Latent maps are PCA (always) and UMAP (from the
analyze folder's ``umap.npy``, else computed on first use when umap-learn is installed). Classes come from the
analyze folder's ``kmeansK/labels.npy`` when there is one, else k-means is run here.

Everything written goes under the session's output folder (default ``RUNDIR/view.E``), never over an existing
file: exports into a new ``state_NNN/`` folder each, particle subsets under a name that does not exist yet.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaussianem.analysis import latent, volumes
from gaussianem.errors import InputError

log = logging.getLogger(__name__)

MAPS = ("pca", "umap")
SUBSET_FORMATS = (".star", ".cs", ".pkl")
EXPORT_FORMATS = ("mrc", "ply", "pdb")
UMAP_NEIGHBOURS = 10  # a UMAP point has no inverse: its z is the mean z of this many nearest particles
ONE_THREAD_BELOW = 20_000  # Gaussians: smaller decodes run on one CPU thread (OpenMP barriers cost more than they
# gain on small ops, and far more on a busy machine)


@dataclass
class Cloud:
    """One decoded state: positions (G, 3) Å, widths (G,) Å, amplitudes (G,), its latent z (zdim,), and the
    seconds the decode took."""

    z: np.ndarray
    positions: np.ndarray
    widths: np.ndarray
    amplitudes: np.ndarray
    seconds: float


def _pkg_load_run(rundir: Path, epoch: int | None, device: str):
    from gaussianem.analysis.inputs import load_run

    return load_run(rundir, epoch, device)


class ViewSession:
    """A trained run's model and latents, with the operations the view's callbacks need.

    Args:
        model: has ``decode(z (B, zdim)) -> positions (B, G, 3), widths (B, G), amplitudes (B, G)`` and
            ``base_cloud`` (optionally ``embed()`` and ``decode(z, embedding=...)``).
        config: the run config (``box_size``, ``pixel_size_angstrom``, ``dataset``...).
        epoch: the epoch of ``z``.
        z: (N, zdim) particle latents.
        rundir: the run folder (to find the analyze folder and the dataset); None for in-memory use.
        outdir: where exports and subsets go (default ``RUNDIR/view.E``).
        max_points: Gaussians drawn at most (a fixed random subset beyond; decoding always uses all).
        n_classes: k-means classes when no analyze folder provides labels.
    """

    def __init__(self, model: Any, config: dict, epoch: int, z: np.ndarray, rundir: str | Path | None = None,
                 outdir: str | Path | None = None, max_points: int = 20_000, n_classes: int = 8,
                 device: str = "cpu", seed: int = 0) -> None:
        self.model = model
        self.config = config
        self.epoch = int(epoch)
        self.z = np.asarray(z, np.float64)
        if self.z.ndim != 2 or len(self.z) == 0:
            raise InputError(f"expected latents of shape (N, zdim), got {self.z.shape}")
        self.rundir = Path(rundir) if rundir is not None else None
        default_out = (self.rundir / f"view.{self.epoch}") if self.rundir is not None else Path("view")
        self.outdir = Path(outdir) if outdir is not None else default_out
        self.device = device
        self.seed = seed
        self._lock = threading.Lock()
        self.grid = volumes.working_grid(config)
        self.base_positions, self.base_widths, self.base_amplitudes = volumes.base_cloud_arrays(model)
        self.n_gaussians = len(self.base_positions)
        self._decode_kwargs = self._embedding_kwargs()
        rng = np.random.default_rng(seed)
        self.draw_index = (np.sort(rng.choice(self.n_gaussians, max_points, replace=False))
                           if self.n_gaussians > max_points else None)
        self.pca = latent.pca_fit(self.z)
        self._maps: dict[str, np.ndarray] = {"pca": self._pca_xy(self.z)}
        self.analyze_dir = self._find_analyze_dir()
        self.labels, self.label_source = self._classes(n_classes)
        self._umap_file = self.analyze_dir / "umap.npy" if self.analyze_dir is not None else None
        self.last_decode_seconds = float("nan")
        self.displacement_max = self._displacement_scale()
        # the 3D view's half-width (Å): the base cloud (99.5 % of its coordinates) plus room for its displacements
        reach = float(np.percentile(np.abs(self.base_positions), 99.5)) if self.n_gaussians else 0.0
        self.view_half_width = min(0.5 * self.grid.extent_angstrom, 1.1 * reach + 2 * self.displacement_max) or \
            0.5 * self.grid.extent_angstrom

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def open(cls, rundir: str | Path, epoch: int | None = None, outdir: str | Path | None = None,
             device: str = "cpu", **kwargs: Any) -> ViewSession:
        """Load a run folder's model (once, on ``device``) and its latents ``z.E.npy``."""
        model, config, epoch, z = _pkg_load_run(Path(rundir), epoch, device)
        return cls(model, config, epoch, z, rundir=rundir, outdir=outdir, device=device, **kwargs)

    def _embedding_kwargs(self) -> dict:
        embed = getattr(self.model, "embed", None)
        if callable(embed) and "embedding" in inspect.signature(self.model.decode).parameters:
            with torch.no_grad():
                return {"embedding": embed()}
        return {}

    def _find_analyze_dir(self) -> Path | None:
        """``RUNDIR/analyze.E`` of this epoch, if analyze wrote one."""
        if self.rundir is None:
            return None
        d = self.rundir / f"analyze.{self.epoch}"
        return d if d.is_dir() else None

    def _classes(self, k: int) -> tuple[np.ndarray, str]:
        """Labels (N,) from the analyze folder's k-means (the smallest K there), else k-means here."""
        n = len(self.z)
        if self.analyze_dir is not None:
            found = []
            for p in self.analyze_dir.glob("kmeans*/labels.npy"):
                m = re.fullmatch(r"kmeans(\d+)", p.parent.name)
                if m:
                    found.append((int(m.group(1)), p))
            for kk, p in sorted(found):
                labels = np.load(p)
                if labels.shape == (n,):
                    return labels.astype(np.int64), f"k-means K={kk} from {p.parent}"
        k = max(1, min(k, n))
        return latent.kmeans(self.z, k, self.seed).labels, f"k-means K={k} (computed here; run analyze to fix it)"

    def _displacement_scale(self) -> float:
        """A fixed colour range for displacements (Å): the 99th percentile over the clouds at the two ends of the
        PC1 and PC2 trajectories (at most four decodes), at least 0.5 Å."""
        ends = [self.pc_path(d, 2) for d in range(1, min(2, self.pca.n_components_) + 1)]
        pos = volumes.decode_points(self.model, np.concatenate(ends), device=self.device)[0]
        d = np.linalg.norm(pos - self.base_positions[None], axis=-1)
        return float(max(np.percentile(d, 99), 0.5))

    # ---------------------------------------------------------------------------------------------------- maps
    def _pca_xy(self, z: np.ndarray) -> np.ndarray:
        s = self.pca.transform(np.atleast_2d(z))
        return s[:, :2] if s.shape[1] >= 2 else np.concatenate([s, np.zeros_like(s)], axis=1)

    @property
    def n_particles(self) -> int:
        return len(self.z)

    @property
    def zdim(self) -> int:
        return self.z.shape[1]

    def umap_available(self) -> bool:
        """UMAP can be shown: analyze wrote one, or umap-learn is installed."""
        if "umap" in self._maps or (self._umap_file is not None and self._umap_file.is_file()):
            return True
        try:
            import umap  # noqa: F401, PLC0415
        except ImportError:
            return False
        return self.zdim > 2

    def map_coordinates(self, method: str) -> np.ndarray:
        """The latent map (N, 2): ``pca`` (PC1, PC2) or ``umap`` (falls back to PCA when unavailable)."""
        if method not in MAPS:
            raise InputError(f"unknown map {method!r}: expected one of {', '.join(MAPS)}")
        if method == "umap" and "umap" not in self._maps:
            emb = None
            if self._umap_file is not None and self._umap_file.is_file():
                emb = np.load(self._umap_file)
                if emb.shape != (self.n_particles, 2):
                    emb = None
            if emb is None and self.umap_available():
                log.info("computing UMAP of %d latents (once)", self.n_particles)
                emb = latent.umap_embedding(self.z, self.seed)
            if emb is None:
                return self._maps["pca"]
            self._maps["umap"] = np.asarray(emb, np.float64)
        return self._maps[method]

    def axis_names(self, method: str) -> tuple[str, str]:
        return ("UMAP1", "UMAP2") if method == "umap" and "umap" in self._maps else ("PC1", "PC2")

    def latent_at(self, method: str, x: float, y: float, particle: int | None = None) -> np.ndarray:
        """The latent point (zdim,) behind a map position: the particle's own z when a particle was clicked;
        otherwise PCA's inverse (the other PCs at the mean) or, for UMAP, the mean z of the nearest particles."""
        if particle is not None and 0 <= particle < self.n_particles:
            return self.z[particle].copy()
        if method == "umap" and "umap" in self._maps:
            emb = self._maps["umap"]
            d = ((emb - np.array([x, y])) ** 2).sum(1)
            near = np.argsort(d)[:UMAP_NEIGHBOURS]
            return self.z[near].mean(0)
        scores = np.zeros(self.pca.n_components_)
        scores[: min(2, len(scores))] = [x, y][: min(2, len(scores))]
        return self.pca.inverse_transform(scores[None])[0]

    def map_position(self, method: str, z: np.ndarray) -> tuple[float, float]:
        """Where a latent point (zdim,) sits on the map: its PCA scores, or on UMAP its nearest particle's place."""
        if method == "umap" and "umap" in self._maps:
            near = int(np.argmin(((self.z - np.asarray(z)[None]) ** 2).sum(1)))
            x, y = self._maps["umap"][near]
        else:
            x, y = self._pca_xy(np.asarray(z))[0]
        return float(x), float(y)

    # ------------------------------------------------------------------------------------------------ decoding
    def decode(self, z: np.ndarray) -> Cloud:
        """One latent point (zdim,) -> its Gaussian cloud (all G Gaussians), timed."""
        z = np.asarray(z, np.float64).reshape(1, -1)
        if z.shape[1] != self.zdim:
            raise InputError(f"a latent point needs {self.zdim} values, got {z.shape[1]}")
        dtype = volumes._model_dtype(self.model)
        threads = (volumes.single_cpu_thread(self.device) if self.n_gaussians < ONE_THREAD_BELOW
                   else contextlib.nullcontext())
        with self._lock, torch.no_grad(), threads:
            t0 = time.perf_counter()
            pos, wid, amp = self.model.decode(torch.as_tensor(z, dtype=dtype, device=self.device),
                                              **self._decode_kwargs)
            pos, wid, amp = (t[0].detach().cpu().double().numpy() for t in (pos, wid, amp))
            seconds = time.perf_counter() - t0
        self.last_decode_seconds = seconds
        return Cloud(z[0], pos, wid, amp, seconds)

    def displacement(self, cloud: Cloud) -> np.ndarray:
        """Distance (G,) Å of every Gaussian from its base (consensus) position."""
        return np.linalg.norm(cloud.positions - self.base_positions, axis=1)

    def pc_path(self, dim: int, n_points: int = 10) -> np.ndarray:
        """Latent points (n_points, zdim) along PC ``dim`` (1-based), 5th to 95th percentile, as analyze does."""
        if not 1 <= dim <= self.pca.n_components_:
            raise InputError(f"PC{dim} does not exist (zdim {self.zdim})")
        return latent.pc_trajectory(self.z, self.pca, dim, n_points)

    @staticmethod
    def line_path(z0: np.ndarray, z1: np.ndarray, n_points: int = 10) -> np.ndarray:
        """Latent points (n_points, zdim) evenly on the straight line from z0 to z1 (both included)."""
        t = np.linspace(0.0, 1.0, max(2, n_points))[:, None]
        return (1 - t) * np.asarray(z0, np.float64)[None] + t * np.asarray(z1, np.float64)[None]

    # ----------------------------------------------------------------------------------------------- subsets
    def particles_in(self, method: str, selection: dict | None) -> np.ndarray:
        """Particles (sorted indices) inside a Plotly selection on the map: ``lassoPoints`` (a polygon) or
        ``range`` (a box), as ``dcc.Graph.selectedData`` holds them. Every particle counts, drawn or not."""
        if not selection:
            return np.zeros(0, np.int64)
        xy = self.map_coordinates(method)
        if selection.get("lassoPoints"):
            from matplotlib.path import Path as Polygon

            lp = selection["lassoPoints"]
            poly = Polygon(np.column_stack([lp["x"], lp["y"]]))
            inside = poly.contains_points(xy)
        elif selection.get("range"):
            r = selection["range"]
            (x0, x1), (y0, y1) = sorted(r["x"]), sorted(r["y"])
            inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        else:
            return np.asarray([p["customdata"] for p in selection.get("points", []) if "customdata" in p],
                              np.int64)
        return np.flatnonzero(inside).astype(np.int64)

    def dataset_dir(self) -> Path | None:
        """The run's dataset folder (from the config), if it still exists."""
        ds = volumes.config_value(self.config, "dataset")
        if not ds:
            return None
        p = Path(ds)
        candidates = [p] if p.is_absolute() else [p, *([self.rundir / p] if self.rundir else [])]
        return next((c for c in candidates if c.is_dir()), None)

    def subset_path(self, name: str | None, suffix: str) -> Path:
        """Where a subset goes: ``name`` (relative names under the output folder), or the next free
        ``subset_NNN`` + suffix. Refuses an existing file."""
        if suffix not in SUBSET_FORMATS:
            raise InputError(f"subsets are written as {', '.join(SUBSET_FORMATS)}, not {suffix!r}")
        if name and name.strip():
            p = Path(name.strip())
            if p.suffix.lower() != suffix:
                p = p.with_name(p.name + suffix)
            p = p if p.is_absolute() else self.outdir / p
            if p.exists():
                raise InputError(f"{p} exists: choose another name (the view never overwrites a file)")
            return p
        return _next_free(self.outdir, "subset_", suffix)

    def write_subset(self, indices: np.ndarray, path: str | Path) -> int:
        """Write particles ``indices`` (dataset particles) through ``select``: a RELION .star / cryoSPARC .cs subset
        of the dataset's source (rows from its manifest), or a cryoDRGN index .pkl. Returns the count."""
        from gaussianem import select as sel

        ds = self.dataset_dir()
        if ds is None:
            raise InputError(f"the run's dataset folder ({volumes.config_value(self.config, 'dataset')}) is missing: "
                             "cannot map particles back to their source")
        path = Path(path)
        if path.exists():
            raise InputError(f"{path} exists: the view never overwrites a file")
        path.parent.mkdir(parents=True, exist_ok=True)
        indices = np.asarray(indices, np.int64)
        ind = volumes.config_value(self.config, "ind")
        if ind:  # a run trained with --ind: latent row i is dataset particle ind[i]
            from gaussianem.io.dataset import MANIFEST, read_json
            from gaussianem.io.indices import read_ind

            indices = read_ind(ind, int(read_json(Path(ds) / MANIFEST)["n_particles"]))[indices]
        if path.suffix.lower() == ".pkl":
            return sel.write_index_pkl(ds, path, indices)
        return sel.select(ds, path, indices=indices)

    # ---------------------------------------------------------------------------------------------- exports
    def export_state(self, z: np.ndarray, formats: tuple[str, ...] = EXPORT_FORMATS) -> list[Path]:
        """Write the state z (zdim,) (or states (T, zdim)) into a new ``state_NNN/`` folder: vol_000.mrc (voxelised
        on the working grid, in the consensus map's frame), gaussians_000.ply, model_000.pdb (pseudo-atomic), as
        ``eval-vol`` writes them, plus z_values.txt. Returns the written paths."""
        from gaussianem.analysis.states import evaluate_points

        formats = tuple(f for f in formats if f in EXPORT_FORMATS)
        if not formats:
            raise InputError(f"choose at least one of {', '.join(EXPORT_FORMATS)}")
        folder = _next_free(self.outdir, "state_", "")
        with self._lock:
            paths = evaluate_points(self.model, np.atleast_2d(z), self.config, folder, formats, device=self.device)
        return [*paths, folder / "z_values.txt"]


def _next_free(folder: Path, prefix: str, suffix: str) -> Path:
    """``folder/prefixNNN suffix`` with the first NNN (from 001) not taken."""
    i = 1
    while (folder / f"{prefix}{i:03d}{suffix}").exists():
        i += 1
    return folder / f"{prefix}{i:03d}{suffix}"
