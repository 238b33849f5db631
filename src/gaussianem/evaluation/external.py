"""Score another tool's outputs (e.g. cryoDRGN) with exactly the metric code that scores GaussianEM.

Two steps, because the other tool generates its own volumes:

1. :func:`write_eval_inputs` (``gaussianem benchmark --truth SIM --external-z z.pkl --write-eval-z DIR``) picks the
   same particle subset and per-state latents as :func:`gaussianem.evaluation.metrics.score` and writes::

       DIR/particles_rows.txt   truth row of each selected particle (one per line)
       DIR/particles_z.txt      its latent (one row each): the tool's --zfile
       DIR/states_rows.txt      truth row of the real particle nearest to each ground-truth volume's mean z
       DIR/states_volume_index.txt   the ground-truth volume of each state
       DIR/states_z.txt         the per-state latents: the tool's --zfile

2. The tool writes one volume per z row into ``DIR/particles/`` and ``DIR/states/`` (e.g.
   ``cryodrgn eval_vol weights.pkl -c config.yaml --zfile DIR/particles_z.txt -o DIR/particles``); file names
   carry the row number (``vol_001.mrc`` ...; any start, numeric order). Then
   ``gaussianem benchmark --truth SIM --external-z z.pkl --external-volumes DIR --external-name NAME`` scores them.

Volumes are compared in the ground truth's frame. A tool may write its maps with another axis order or hand;
``transform="auto"`` tries the 48 signed axis permutations of the cube (mirrors about the centre voxel D//2) on a
few calibration particles and applies the best one to all volumes when it beats the volumes as written by at least
0.02 FSC-AUC (recorded in the result).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gaussianem.errors import InputError
from gaussianem.evaluation.metrics import (
    ScoreConfig,
    Truth,
    TruthVolumes,
    fsc_auc_pair,
    latent_metrics,
    match_box,
    score,
    select_particles,
    spherical_mask,
    state_groups,
    state_latents,
    summarize,
)
from gaussianem.io.checks import check_finite
from gaussianem.io.mrc import read_volume
from gaussianem.io.pickles import load_pickle

log = logging.getLogger(__name__)

PARTICLES = "particles"
STATES = "states"


def load_latents(path: str | Path) -> np.ndarray:
    """Latent means (N, zdim) from a ``.pkl`` (cryoDRGN: the first pickled object is z_mu), ``.npy``/``.npz``
    (first array) or text file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"latent file not found: {path}")
    if path.suffix == ".pkl":
        z = load_pickle(path, "latent")
        if isinstance(z, (tuple, list)):
            z = z[0]
    try:
        if path.suffix == ".npy":
            z = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                z = f[f.files[0]]
        elif path.suffix != ".pkl":
            z = np.loadtxt(path, ndmin=2)
        z = np.asarray(z, dtype=np.float64)
    except (OSError, ValueError, TypeError, EOFError, IndexError) as exc:
        raise InputError(f"{path}: cannot read latents ({exc})") from None
    check_finite(z, path, "the latents")
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2:
        raise InputError(f"{path}: latents must be (N, zdim), got shape {z.shape}")
    return z


def load_rows(path: str | Path) -> np.ndarray:
    """Particle indices (truth rows) from ``.pkl`` (cryoDRGN --ind), ``.npy`` or text -> (M,) int."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"index file not found: {path}")
    try:
        if path.suffix == ".pkl":
            rows = load_pickle(path, "index")
        elif path.suffix == ".npy":
            rows = np.load(path, allow_pickle=False)
        else:
            rows = np.loadtxt(path, ndmin=1)
        return np.asarray(rows, dtype=np.int64).ravel()
    except InputError:
        raise
    except (OSError, ValueError, TypeError, EOFError) as exc:
        raise InputError(f"{path}: cannot read particle indices ({exc})") from None


def _write_lines(path: Path, array: np.ndarray, fmt: str) -> None:
    from gaussianem.io.writes import atomic_path

    with atomic_path(path) as tmp:
        np.savetxt(tmp, array, fmt=fmt)


def write_eval_inputs(z: np.ndarray, truth_rows: np.ndarray, truth: Truth, outdir: str | Path,
                      config: ScoreConfig | None = None) -> dict:
    """Write the z files at which the other tool must generate volumes (see the module docstring)."""
    cfg = config or ScoreConfig()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    truth_rows = np.asarray(truth_rows, dtype=np.int64)
    selected = select_particles(truth.n, cfg.n_images, cfg.seed, available=truth_rows)
    pos = np.full(truth.n, -1, dtype=np.int64)
    pos[truth_rows] = np.arange(len(truth_rows))
    rows = pos[selected]
    volume_index = truth.volume_index[truth_rows]
    groups = state_groups(volume_index, cfg.max_states)
    z_state, state_rows = state_latents(z, volume_index, groups)
    _write_lines(outdir / "particles_rows.txt", selected, "%d")
    _write_lines(outdir / "particles_z.txt", z[rows], "%.8g")
    _write_lines(outdir / "states_rows.txt", truth_rows[state_rows], "%d")
    _write_lines(outdir / "states_volume_index.txt", groups, "%d")
    _write_lines(outdir / "states_z.txt", z_state, "%.8g")
    log.info("wrote %d particle and %d state latents to %s", len(rows), len(groups), outdir)
    return {"particles": int(len(rows)), "states": int(len(groups)), "dir": str(outdir)}


def _numbered_volumes(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix == ".mrc"]
    if not files:
        raise InputError(f"{folder}: no .mrc volumes")

    def key(p: Path) -> tuple[int, str]:
        m = re.findall(r"\d+", p.stem)
        return (int(m[-1]) if m else -1, p.name)

    return sorted(files, key=key)


def volume_index_map(folder: Path, rows_file: Path) -> dict[int, Path]:
    """truth row -> volume file, pairing the folder's volumes (numeric order) with the rows file's lines."""
    if not rows_file.is_file():
        raise InputError(f"{rows_file} not found: write it with --write-eval-z before generating the volumes")
    rows = load_rows(rows_file)
    files = _numbered_volumes(folder)
    if len(files) != len(rows):
        raise InputError(f"{folder}: {len(files)} volumes for {len(rows)} rows in {rows_file.name}")
    return {int(r): f for r, f in zip(rows, files, strict=True)}


# 48 signed axis permutations: (name, permutation of the (z, y, x) axes, axes mirrored about D//2)
TRANSFORMS: list[tuple[str, tuple[int, int, int], tuple[int, ...]]] = [
    ("".join("zyx"[a] for a in perm) + ("" if not flips else "-mirror" + "".join("zyx"[a] for a in flips)),
     perm, flips)
    for perm in itertools.permutations(range(3))
    for flips in itertools.chain.from_iterable(itertools.combinations(range(3), k) for k in range(4))
]


def apply_transform(volume: Tensor, perm: tuple[int, int, int], flips: tuple[int, ...]) -> Tensor:
    """Permute the axes of a volume (D, D, D), then mirror the listed axes about the centre voxel D//2."""
    v = volume.permute(*perm)
    for ax in flips:
        v = torch.roll(torch.flip(v, [ax]), 1, ax)
    return v


class ExternalVolumes:
    """Another tool's volumes indexed by truth row, loaded on demand, on one device."""

    def __init__(self, index: dict[int, Path], device: torch.device | str = "cpu") -> None:
        self.index = index
        self.device = torch.device(device)
        self.perm: tuple[int, int, int] = (0, 1, 2)
        self.flips: tuple[int, ...] = ()
        first, self.pixel_size_angstrom, _ = read_volume(next(iter(index.values())))
        self.box_size = int(first.shape[-1])

    def load(self, truth_row: int, transformed: bool = True) -> Tensor:
        path = self.index.get(int(truth_row))
        if path is None:
            raise InputError(f"no external volume for particle {truth_row}: regenerate the z files with "
                             f"--write-eval-z using the same --n-images / --seed / --max-states")
        vol, _, _ = read_volume(path)
        t = torch.as_tensor(vol, dtype=torch.float64, device=self.device)
        return apply_transform(t, self.perm, self.flips) if transformed else t

    def generator(self, truth_rows: np.ndarray):
        """A metrics.VolumeGenerator over z rows, given the truth row of every z row."""

        def generate(rows: np.ndarray, z: np.ndarray) -> Iterator[Tensor]:
            for r in rows:
                yield self.load(int(truth_rows[r]))

        return generate


def calibrate_transform(volumes: ExternalVolumes, truth: Truth, calibration_rows: np.ndarray, box: int,
                        mask: Tensor, min_gain: float = 0.02) -> dict:
    """Pick the signed axis permutation that maximises the mean FSC-AUC on the calibration particles.

    The volumes stay as written unless the best transform beats them by ``min_gain`` (FSC-AUC): a poorly trained
    tool's volumes match every transform about equally, and picking the noise maximum would flatter it.
    """
    tv = TruthVolumes(truth, box, volumes.device)
    vols = [match_box(volumes.load(int(r), transformed=False), box) for r in calibration_rows]
    refs = [tv(int(truth.volume_index[r])) for r in calibration_rows]

    def mean_auc(t: tuple, n: int) -> float:
        return float(np.mean([fsc_auc_pair(apply_transform(v, t[1], t[2]), g, mask)
                              for v, g in zip(vols[:n], refs[:n], strict=True)]))

    # screen all 48 on two particles, then rank the identity and the 4 best screened on all of them
    screen = sorted(TRANSFORMS, key=lambda t: -mean_auc(t, 2))
    finalists = [TRANSFORMS[0]] + [t for t in screen[:4] if t != TRANSFORMS[0]]
    scores = {t[0]: mean_auc(t, len(vols)) for t in finalists}
    ranked = [t for t in TRANSFORMS if t[0] in scores]
    best = max(ranked, key=lambda t: scores[t[0]])
    identity = TRANSFORMS[0][0]
    if scores[best[0]] < scores[identity] + min_gain:
        best = TRANSFORMS[0]
    volumes.perm, volumes.flips = best[1], best[2]
    if best[0] != identity:
        log.warning("external volumes match the ground truth best after transform %s (FSC-AUC %.3f vs %.3f as "
                    "written)", best[0], scores[best[0]], scores[identity])
    return {"transform": best[0], "calibration_fsc_auc": scores[best[0]], "identity_fsc_auc": scores[identity],
            "calibration_particles": int(len(calibration_rows))}


def _external_latents(truth: Truth, z_path: str | Path, rows_path: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Another tool's latents (M, zdim) and the truth row of each (M,), checked against the ground truth."""
    z = load_latents(z_path)
    truth_rows = load_rows(rows_path) if rows_path else np.arange(len(z))
    if len(truth_rows) != len(z):
        raise InputError(f"{len(z)} latents but {len(truth_rows)} particle indices")
    if len(z) > truth.n:
        raise InputError(f"{len(z)} latents but the ground truth has only {truth.n} particles")
    truth_rows = np.asarray(truth_rows, dtype=np.int64)
    if truth_rows.size and (truth_rows.min() < 0 or truth_rows.max() >= truth.n):
        raise InputError(f"particle rows exceed the ground truth's {truth.n} particles")
    return z, truth_rows


def score_external_latents(truth: Truth, z_path: str | Path, name: str = "external",
                           rows_path: str | Path | None = None, config: ScoreConfig | None = None) -> dict:
    """Score another tool from its latents alone (no volumes): the latent metrics of :func:`score`, with the
    FSC-AUC entries empty (n = 0)."""
    cfg = config or ScoreConfig()
    z, truth_rows = _external_latents(truth, z_path, rows_path)
    empty = summarize(np.empty(0))
    return {"tool": name, "name": name, "z": str(z_path), "volumes": None, "n_particles": int(len(z)),
            "zdim": int(z.shape[1]), "per_image_fsc_auc": dict(empty), "per_state_fsc_auc": dict(empty),
            "latent": latent_metrics(z, truth.state[truth_rows], truth.coordinate[truth_rows],
                                     seed=cfg.seed, k=cfg.knn_k, n_sample=cfg.knn_sample),
            "consensus_fsc_auc": {}, "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}


def score_external(truth: Truth, z_path: str | Path, volumes_dir: str | Path, name: str = "external",
                   rows_path: str | Path | None = None, config: ScoreConfig | None = None,
                   device: torch.device | str = "cpu", transform: str = "auto", n_calibration: int = 8) -> dict:
    """Score another tool from its latents and the volumes it generated at :func:`write_eval_inputs`' z files.

    ``rows_path``: truth row of each latent row (e.g. cryoDRGN's --ind file); default: latent row i is truth row i.
    ``transform``: "auto" (calibrate, see the module docstring), "none", or a name from :data:`TRANSFORMS`.
    """
    cfg = config or ScoreConfig()
    z, truth_rows = _external_latents(truth, z_path, rows_path)
    volumes_dir = Path(volumes_dir)
    pdir, sdir = volumes_dir / PARTICLES, volumes_dir / STATES
    if not pdir.is_dir():
        raise InputError(f"{volumes_dir}: no {PARTICLES}/ folder of per-particle volumes")
    volumes = ExternalVolumes(volume_index_map(pdir, volumes_dir / "particles_rows.txt"), device)
    has_states = sdir.is_dir()
    if has_states:
        volumes.index.update(volume_index_map(sdir, volumes_dir / "states_rows.txt"))
    else:
        log.warning("%s: no %s/ folder: per-state FSC-AUC is skipped", volumes_dir, STATES)
    truth_box, truth_apix = truth.grid()
    box = min(truth_box, volumes.box_size)
    extent_tool, extent_truth = volumes.box_size * volumes.pixel_size_angstrom, truth_box * truth_apix
    if abs(volumes.pixel_size_angstrom - 1.0) > 1e-6 and abs(extent_tool - extent_truth) > 0.02 * extent_truth:
        log.warning("external volumes span %.1f Å, the ground truth %.1f Å", extent_tool, extent_truth)

    mask = spherical_mask(box, cfg.mask_radius_fraction, cfg.mask_edge_fraction, device=volumes.device)
    selected = select_particles(truth.n, cfg.n_images, cfg.seed, available=truth_rows)
    calib = {"transform": TRANSFORMS[0][0]}
    if transform == "auto":
        calib = calibrate_transform(volumes, truth, selected[:n_calibration], box, mask)
    elif transform != "none":
        found = [t for t in TRANSFORMS if t[0] == transform]
        if not found:
            names = ", ".join(t[0] for t in TRANSFORMS)
            raise InputError(f"unknown transform {transform!r}; one of: auto, none, {names}")
        volumes.perm, volumes.flips = found[0][1], found[0][2]
        calib = {"transform": transform}

    from gaussianem.evaluation.suite import truth_consensus

    gen = volumes.generator(truth_rows)
    result = score(z, truth_rows, truth, gen, consensus=truth_consensus(truth), config=cfg, device=volumes.device,
                   box_size=box, per_state=has_states)
    result.update({"tool": name, "name": name, "z": str(z_path), "volumes": str(volumes_dir),
                   "volume_transform": calib})
    return result
