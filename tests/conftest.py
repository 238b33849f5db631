"""Shared fixtures and helpers of the test suite (tests/ is on sys.path under pytest: ``from conftest import ...``).

Helpers: a tiny particle simulator with RELION 3.1 / cryoSPARC writers and the preprocess call (``simulate``,
``write_relion31``, ``make_cs``, ``write_map``, ``run``), and a tiny two-state training dataset (``make_dataset``,
``SMALL`` model sizes).
"""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from scipy.spatial.transform import Rotation

from gaussianem.io.dataset import write_ctf, write_poses
from gaussianem.io.mrc import write_volume
from gaussianem.io.ply import write_gaussians_ply
from gaussianem.io.writes import write_json_atomic
from gaussianem.physics.ctf import ctf_rfft2
from gaussianem.physics.fourier import apply_filter_rfft2
from gaussianem.physics.projection import project_gaussians, voxelize_gaussians
from gaussianem.physics.rotation import matrix_to_euler_relion, random_rotations
from gaussianem.preprocess import PreprocessConfig, preprocess

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return torch.device(request.param)


def pytest_configure(config):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


# ---------------------------------------------------------------------------------------------- tiny simulator

BLOBS = np.array([[-9.0, -4.0, 2.0], [8.0, -6.0, -3.0], [2.0, 9.0, 5.0], [-3.0, 3.0, -8.0], [10.0, 7.0, 0.0]])


def blob_model(apix: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An asymmetric cluster of Gaussians (Å) whose projections at random poses decorrelate."""
    pos = torch.as_tensor(BLOBS * 1.6, dtype=torch.float64)
    sig = torch.full((len(BLOBS),), 2.2 * apix, dtype=torch.float64)
    amp = torch.tensor([1.0, 0.8, 1.2, 0.9, 0.7], dtype=torch.float64)
    return pos, sig, amp


def random_ctf(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "defocus_u_angstrom": rng.uniform(8000, 20000, n),
        "defocus_v_angstrom": rng.uniform(8000, 20000, n),
        "defocus_angle_deg": rng.uniform(-90, 90, n),
        "voltage_kv": np.full(n, 300.0),
        "cs_mm": np.full(n, 2.7),
        "amplitude_contrast": np.full(n, 0.1),
        "phase_shift_deg": np.zeros(n),
    }


def simulate(n: int, box: int, apix: float, seed: int = 0, noise: float = 0.0, dark: bool = False,
             with_ctf: bool = True) -> dict:
    """Images (n, box, box) of the blob model with RELION poses + CTF (positive at low frequency = white)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    rot = random_rotations(n, gen)
    shift = torch.as_tensor(rng.uniform(-3, 3, (n, 2)) * apix)
    pos, sig, amp = blob_model(apix)
    img = project_gaussians(pos, sig, amp, rot, shift, box, apix)
    ctf = random_ctf(n, rng) if with_ctf else None
    if ctf is not None:
        params = {k: torch.as_tensor(v) for k, v in ctf.items()}
        img = apply_filter_rfft2(img, ctf_rfft2(box, apix, params, dtype=torch.float64))
    img = img.numpy()
    if noise:
        img = img + rng.normal(0, noise * img.std(), img.shape)
    if dark:
        img = -img
    volume = voxelize_gaussians(pos, sig, amp, box, apix).numpy()
    return {"images": img.astype(np.float32), "rotation": rot.numpy(), "shift": shift.numpy(), "ctf": ctf,
            "euler": matrix_to_euler_relion(rot).numpy(), "volume": volume.astype(np.float32), "apix": apix,
            "box": box}


def write_stack(path: Path, images: np.ndarray, apix: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.ascontiguousarray(images, np.float32))
        m.set_image_stack()
        m.voxel_size = apix


def relion_columns(sim: dict, names: list[str], angst: bool = True) -> pd.DataFrame:
    n = len(names)
    e, s, c = sim["euler"], sim["shift"], sim["ctf"]
    df = pd.DataFrame({"rlnImageName": names, "rlnAngleRot": e[:, 0], "rlnAngleTilt": e[:, 1],
                       "rlnAnglePsi": e[:, 2]})
    if angst:
        df["rlnOriginXAngst"], df["rlnOriginYAngst"] = s[:, 0], s[:, 1]
    else:
        df["rlnOriginX"], df["rlnOriginY"] = s[:, 0] / sim["apix"], s[:, 1] / sim["apix"]
    if c is not None:
        df["rlnDefocusU"], df["rlnDefocusV"] = c["defocus_u_angstrom"], c["defocus_v_angstrom"]
        df["rlnDefocusAngle"] = c["defocus_angle_deg"]
        df["rlnPhaseShift"] = c["phase_shift_deg"]
    df["rlnRandomSubset"] = np.arange(n) % 2 + 1
    return df


def optics_table(groups: list[tuple[int, float, int]]) -> pd.DataFrame:
    """Optics rows for (group number, pixel size, box)."""
    return pd.DataFrame({
        "rlnOpticsGroupName": [f"opticsGroup{g}" for g, _, _ in groups],
        "rlnOpticsGroup": [g for g, _, _ in groups],
        "rlnImagePixelSize": [a for _, a, _ in groups],
        "rlnImageSize": [d for _, _, d in groups],
        "rlnImageDimensionality": [2] * len(groups),
        "rlnVoltage": [300.0] * len(groups),
        "rlnSphericalAberration": [2.7] * len(groups),
        "rlnAmplitudeContrast": [0.1] * len(groups),
    })


def write_relion31(folder: Path, sim: dict, n_stacks: int = 2, name: str = "run_data.star") -> Path:
    """RELION 3.1 project layout: star in Refine3D/job010/, stacks in Extract/job005/Movies/ (project-relative)."""
    n = len(sim["images"])
    split = np.array_split(np.arange(n), n_stacks)
    names = []
    for k, rows in enumerate(split):
        rel = f"Extract/job005/Movies/mic{k:03d}.mrcs"
        write_stack(folder / rel, sim["images"][rows], sim["apix"])
        names += [f"{i + 1:06d}@{rel}" for i in range(len(rows))]
    df = relion_columns(sim, names)
    df["rlnOpticsGroup"] = 1
    star_path = folder / "Refine3D" / "job010" / name
    star_path.parent.mkdir(parents=True, exist_ok=True)
    starfile.write({"optics": optics_table([(1, sim["apix"], sim["box"])]), "particles": df}, star_path,
                   float_format="%.12g")
    return star_path


def write_map(path: Path, sim: dict) -> Path:
    write_volume(path, sim["volume"], sim["apix"])
    return path


def run(tmp: Path, particles: Path, map_path: Path, **kw) -> Path:
    cfg = PreprocessConfig(particles=particles, outdir=tmp / kw.pop("out", "ds"), map_path=map_path, **kw)
    return preprocess(cfg)


def euler_of(rotation: np.ndarray) -> np.ndarray:
    return matrix_to_euler_relion(torch.as_tensor(rotation)).numpy()


def assert_same_angles(rot_a: np.ndarray, rot_b: np.ndarray, tol: float = 1e-6) -> None:
    """Rotation matrices agree (max element error ≤ tol ⇒ angles agree to ~tol rad)."""
    assert np.abs(rot_a - rot_b).max() <= tol


# ------------------------------------------------------------------------------------------ cryoSPARC .cs

def make_cs(sim: dict, paths: list[str], idx: np.ndarray, psize: float, extra: bool = True) -> np.ndarray:
    """A .cs array built from RELION poses by the published conventions (cryoDRGN parse_pose_csparc, pyem):
    A = Rodrigues(pose)ᵀ, shift (px) = rlnOrigin (px), angles in radians."""
    n = len(idx)
    fields = [("uid", "<u8"), ("blob/path", "S64"), ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)),
              ("blob/psize_A", "<f4"), ("alignments3D/pose", "<f4", (3,)), ("alignments3D/shift", "<f4", (2,)),
              ("alignments3D/psize_A", "<f4"), ("ctf/df1_A", "<f4"), ("ctf/df2_A", "<f4"),
              ("ctf/df_angle_rad", "<f4"), ("ctf/accel_kv", "<f4"), ("ctf/cs_mm", "<f4"),
              ("ctf/amp_contrast", "<f4"), ("ctf/phase_shift_rad", "<f4")]
    if extra:
        fields.append(("alignments3D/class_posterior", "<f4"))
    cs = np.zeros(n, dtype=fields)
    cs["uid"] = np.arange(n) + 10**12
    cs["blob/path"] = [p.encode() for p in paths]
    cs["blob/idx"] = idx
    cs["blob/shape"] = sim["box"]
    cs["blob/psize_A"] = psize
    cs["alignments3D/psize_A"] = psize
    # scipy's rotation vector of Aᵀ: an independent implementation of the inverse of A = Rodrigues(pose)ᵀ
    cs["alignments3D/pose"] = Rotation.from_matrix(np.transpose(sim["rotation"], (0, 2, 1))).as_rotvec()
    cs["alignments3D/shift"] = sim["shift"] / psize
    c = sim["ctf"]
    cs["ctf/df1_A"], cs["ctf/df2_A"] = c["defocus_u_angstrom"], c["defocus_v_angstrom"]
    cs["ctf/df_angle_rad"] = np.deg2rad(c["defocus_angle_deg"])
    cs["ctf/accel_kv"], cs["ctf/cs_mm"], cs["ctf/amp_contrast"] = 300, 2.7, 0.1
    cs["ctf/phase_shift_rad"] = np.deg2rad(c["phase_shift_deg"])
    return cs


# ------------------------------------------------------------------------------- tiny training dataset

BOX = 32
APIX = 2.0


def tiny_cloud(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two lobes of Gaussians on a 2-Å grid: (G, 3) Å, widths (G,), amplitudes (G,)."""
    g = np.stack(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"), -1).reshape(-1, 3) * 2.0
    lobe = g[np.linalg.norm(g, axis=1) <= 4.1]
    pos = np.concatenate([lobe + [-7.0, 0, 0], lobe + [7.0, 0, 0]])
    rng = np.random.default_rng(seed)
    amp = 1.0 + 0.2 * rng.random(len(pos))
    return pos, np.full(len(pos), 1.6), amp


def make_dataset(root: Path, n: int = 256, seed: int = 0, noise: float = 0.5) -> dict:
    """Write a dataset folder (io/dataset.py layout) of ``n`` particles from two states of a tiny cloud: in state 1
    the right lobe moves by +6 Å in y. Returns the truth (state per particle)."""
    root.mkdir(parents=True, exist_ok=True)
    pos, wid, amp = tiny_cloud(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    state = rng.integers(0, 2, n)
    moved = pos.copy()
    moved[len(pos) // 2:, 1] += 6.0
    per = np.where(state[:, None, None] == 1, moved[None], pos[None])  # (N, G, 3)
    rot = random_rotations(n, generator=gen, dtype=torch.float64)
    shifts = rng.normal(0, 1.0, (n, 2))
    ctf = {"defocus_u_angstrom": rng.uniform(8000, 15000, n), "voltage_kv": np.full(n, 300.0),
           "cs_mm": np.full(n, 2.7), "amplitude_contrast": np.full(n, 0.1), "phase_shift_deg": np.zeros(n),
           "defocus_angle_deg": rng.uniform(0, 180, n)}
    ctf["defocus_v_angstrom"] = ctf["defocus_u_angstrom"] - 200
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    img = project_gaussians(t(per), t(wid), t(amp), rot, t(shifts), BOX, APIX)
    img = apply_filter_rfft2(img, ctf_rfft2(BOX, APIX, {k: t(v) for k, v in ctf.items()}, dtype=torch.float64))
    img = img.numpy()
    img = img + rng.normal(0, noise * img.std(), img.shape)
    img = img.astype(np.float32)
    with mrcfile.new(root / "particles.mrcs", overwrite=True) as m:
        m.set_data(img)
        m.voxel_size = APIX
    write_poses(root, rot.numpy(), shifts)
    write_ctf(root, ctf)
    write_gaussians_ply(root / "gaussians_init.ply", pos, wid, amp, 1.0, 2.0)
    write_json_atomic(root / "dataset.json", {
        "n_particles": n, "box_size": BOX, "pixel_size_angstrom": APIX, "original_box_size": BOX,
        "original_pixel_size_angstrom": APIX, "contrast": "as-is", "image_std": float(img.std())})
    return {"state": state}


SMALL = dict(encoder_hidden=128, gaussian_hidden=32, decoder_hidden=32, decoder_features=64, embedding_dim=8,
             zdim=2, batch_size=16, lr=1e-3, num_workers=0, progress=False, device="cpu", knn_start_epoch=1,
             knn_weight=1e-3, eval_batch_size=64)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread for the module avoids OpenMP spin contention on small shared CI machines
    (modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
