"""Fault injection across every command (issue 16): bad, foreign and hostile inputs, unwritable outputs, a full
disk, a second writer.

Every case runs one command in-process through ``gaussianem.cli.main`` on a fresh copy of a tiny world (a
simulation, the dataset preprocessed from it, a one-epoch run, cryoDRGN-style pickles) and asserts:

- the exit code (2: bad input, 1: a failure while running);
- one line on stderr, ``gaussianem COMMAND: error: ...`` naming the cause, and no traceback;
- the sha256 of every file of the world unchanged, and no file or folder added or removed (no output, no partial
  output, no staging folder, no temporary file);
- for the pickle and checkpoint payloads, that the payload did not run (it would create a marker file).

docs/RELIABILITY.md lists the cases and what each gets.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import io
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
import torch
import yaml

from gaussianem.cli import main as cli_main

# ------------------------------------------------------------------------------------------------- the world

TRAIN_ARGS = ["--device", "cpu", "--num-workers", "0", "--no-progress", "--encoder-hidden", "32",
              "--gaussian-hidden", "16", "--decoder-hidden", "16", "--decoder-features", "16", "--embedding-dim", "4",
              "--zdim", "2", "--batch-size", "8", "--eval-batch-size", "32", "--knn-sample", "8", "--knn-near", "2",
              "--knn-far", "2", "--seed", "1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """sim/ (simulate toy, 24 particles, box 16), ds/ (preprocessed), run/ (one epoch), drgn/ (cryoDRGN files)."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("world")
    try:
        assert cli_main(["simulate", "--preset", "toy", "-o", str(root / "sim"), "--n-particles", "24", "--box",
                         "16", "--snr", "10", "--seed", "0", "--device", "cpu"]) == 0
        assert cli_main(["preprocess", str(root / "sim" / "particles.star"), "-o", str(root / "ds"), "--map",
                         str(root / "sim" / "consensus.mrc"), "--max-gaussians", "40", "--device", "cpu"]) == 0
        assert cli_main(["train", str(root / "ds"), "-o", str(root / "run"), "--epochs", "1", *TRAIN_ARGS]) == 0
        from gaussianem.io.cryodrgn import write_ctf_pkl, write_pose_pkl
        from gaussianem.io.dataset import load_dataset

        ds = load_dataset(root / "ds")
        drgn = root / "drgn"
        drgn.mkdir()
        write_pose_pkl(drgn / "poses.pkl", ds.rotations, ds.shifts_angstrom, ds.box_size, ds.pixel_size_angstrom)
        write_ctf_pkl(drgn / "ctf.pkl", {k: np.asarray(v) for k, v in ds.ctf.items()}, ds.box_size,
                      ds.pixel_size_angstrom)
        with mrcfile.new(drgn / "particles.mrcs") as m:
            m.set_data(np.asarray(ds.images, np.float32))
            m.set_image_stack()
            m.voxel_size = ds.pixel_size_angstrom
        np.save(drgn / "index.npy", np.arange(5))
        ds.close()
    finally:
        torch.set_num_threads(n_threads)
    return root


PLACES = {"sim": "sim", "star": "sim/particles.star", "map": "sim/consensus.mrc", "ds": "ds", "run": "run",
          "drgn": "drgn", "out": "out", "afile": "sim/simulation.json"}


@dataclass
class W:
    """A fresh copy of the world for one case."""

    root: Path
    marker: Path  # what a payload would create (outside root)
    stack: contextlib.ExitStack

    def __getattr__(self, name: str) -> Path:
        """The world's places: sim, star, map, ds, run, drgn, out (a new output) and afile (a regular file:
        ``afile/x`` is an impossible output path, ENOTDIR)."""
        if name in PLACES:
            return self.root / PLACES[name]
        raise AttributeError(name)

    def write(self, name: str, data: bytes | str) -> Path:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return p

    def payload(self) -> object:
        return Payload(self.marker)


class Payload:
    """Unpickling it runs ``exec`` (which would create the marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def pickle_bytes(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=4)


def torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out[rel + "/"] = "dir"
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                out[os.path.join(rel, name)] = hashlib.sha256(f.read()).hexdigest()
    return out


def fail_writes(mp: pytest.MonkeyPatch, root: Path, err: int = errno.ENOSPC, after: int = 0) -> None:
    """Every write under ``root`` (lock files aside) after the first ``after`` raises OSError(err): a full disk
    (ENOSPC), a read-only or forbidden place (EACCES) without needing a non-root user."""
    root_s = os.path.abspath(root)
    count = [0]

    def hit(path) -> bool:
        if not isinstance(path, str | bytes | os.PathLike):
            return False
        p = os.path.abspath(os.fsdecode(path))
        if not p.startswith(root_s + os.sep) or p.endswith(".lock"):
            return False
        count[0] += 1
        return count[0] > after

    def error(path):
        return OSError(err, os.strerror(err), os.fsdecode(path))

    real_open, real_os_open, real_save = builtins.open, os.open, torch.save

    def fake_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and hit(file):
            raise error(file)
        return real_open(file, mode, *a, **k)

    def fake_os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and hit(path):
            raise error(path)
        return real_os_open(path, flags, *a, **k)

    def fake_save(obj, f, *a, **k):
        if hit(f):
            raise error(f)
        return real_save(obj, f, *a, **k)

    mp.setattr(builtins, "open", fake_open)
    mp.setattr(io, "open", fake_open)
    mp.setattr(os, "open", fake_os_open)
    mp.setattr(torch, "save", fake_save)


def hold_lock(w: W, folder: Path, inside: bool = True) -> None:
    from gaussianem.io.locks import folder_lock

    w.stack.enter_context(folder_lock(folder, "gaussianem test-holder", inside=inside))


def edit_star(w: W, column: str, row: int, value) -> Path:
    blocks = starfile.read(w.star, always_dict=True)
    for name, df in blocks.items():
        if column in df.columns:
            df = df.astype({column: object}) if isinstance(value, str) else df
            df.loc[row if len(df) > row else 0, column] = value
            blocks[name] = df
    path = w.sim / "edited.star"
    starfile.write(blocks, path)
    return path


def edit_npz(path: Path, **changes) -> None:
    with np.load(path) as f:
        d = {k: f[k] for k in f.files}
    for k, v in changes.items():
        d[k] = v(d[k]) if callable(v) else v
    np.savez(path, **d)


# ------------------------------------------------------------------------------------------------- the cases

CASES: dict[str, tuple] = {}


def case(command: str, rc: int, needle: str, payload: bool = False):
    """Register ``fn(w, mp) -> argv`` as the case COMMAND-NAME, expecting exit ``rc`` and ``needle`` in the line."""
    def deco(fn):
        CASES[f"{command}-{fn.__name__.removeprefix('_')}"] = (command, rc, needle, payload, fn)
        return fn
    return deco


# ---- preprocess
def _drgn_args(w: W, poses: Path | None = None, ctf: Path | None = None) -> list:
    return [w.drgn / "particles.mrcs", "-o", w.out, "--map", w.map, "--poses", poses or w.drgn / "poses.pkl",
            "--ctf", ctf or w.drgn / "ctf.pkl", "--device", "cpu"]


@case("preprocess", 2, "builtins.exec", payload=True)
def _pose_pickle_payload(w, mp):
    return _drgn_args(w, poses=w.write("evil_poses.pkl", pickle_bytes((w.payload(), np.zeros((24, 2))))))


@case("preprocess", 2, "builtins.exec", payload=True)
def _ctf_pickle_payload(w, mp):
    return _drgn_args(w, ctf=w.write("evil_ctf.pkl", pickle_bytes(w.payload())))


@case("preprocess", 2, "system", payload=True)
def _pose_pickle_os_system(w, mp):
    class P:
        def __reduce__(self):
            return (os.system, (f"touch {w.marker}",))
    return _drgn_args(w, poses=w.write("evil2.pkl", pickle_bytes(P())))


@case("preprocess", 2, "voltage")
def _ctf_pickle_voltage_zero(w, mp):
    from gaussianem.io.pickles import load_pickle

    arr = load_pickle(w.drgn / "ctf.pkl")
    arr[:, 5] = 0
    return _drgn_args(w, ctf=w.write("ctf_v0.pkl", pickle_bytes(arr)))


@case("preprocess", 2, "@")
def _image_name_without_at(w, mp):
    blocks = starfile.read(w.star, always_dict=True)
    key = next(k for k, df in blocks.items() if "rlnImageName" in df.columns)
    blocks[key].loc[4, "rlnImageName"] = blocks[key].loc[4, "rlnImageName"].split("@", 1)[1]
    starfile.write(blocks, w.sim / "noat.star")
    return [w.sim / "noat.star", "-o", w.out, "--map", w.map, "--device", "cpu"]


@case("preprocess", 2, "several images")
def _mrc_stack_named_without_at(w, mp):
    shutil.copy(w.sim / "particles.mrcs", w.sim / "stack.mrc")  # a stack under a single-image suffix
    blocks = starfile.read(w.star, always_dict=True)
    key = next(k for k, df in blocks.items() if "rlnImageName" in df.columns)
    blocks[key]["rlnImageName"] = [f"{i + 1}@stack.mrc" for i in range(len(blocks[key]))]
    blocks[key].loc[6, "rlnImageName"] = "stack.mrc"
    starfile.write(blocks, w.sim / "bare.star")
    return [w.sim / "bare.star", "-o", w.out, "--map", w.map, "--device", "cpu"]


@case("preprocess", 2, "all-zero")
def _all_zero_map(w, mp):
    from gaussianem.io.mrc import write_volume

    write_volume(w.root / "zero.mrc", np.zeros((16, 16, 16), np.float32), 3.0)
    return [w.star, "-o", w.out, "--map", w.root / "zero.mrc", "--device", "cpu"]


@case("preprocess", 2, "non-finite")
def _nan_map(w, mp):
    from gaussianem.io.mrc import write_volume

    vol = mrcfile.read(w.map).copy()
    vol[3, 4, 5] = np.nan
    write_volume(w.root / "nanmap.mrc", vol, 3.0)
    return [w.star, "-o", w.out, "--map", w.root / "nanmap.mrc", "--device", "cpu"]


@case("preprocess", 2, "extreme")
def _extreme_pixel(w, mp):
    data = mrcfile.read(w.sim / "particles.mrcs").copy()
    data[7, 3, 3] = 3e38
    shutil.copy(w.star, w.sim / "hot.star")
    (w.sim / "hot.star").write_text(w.star.read_text().replace("particles.mrcs", "hot.mrcs"))
    with mrcfile.new(w.sim / "hot.mrcs") as m:
        m.set_data(data)
        m.set_image_stack()
        m.voxel_size = 3.0
    return [w.sim / "hot.star", "-o", w.out, "--map", w.map, "--device", "cpu"]


@case("preprocess", 2, "truncated")
def _truncated_stack(w, mp):
    data = (w.sim / "particles.mrcs").read_bytes()
    (w.sim / "particles.mrcs").write_bytes(data[: len(data) // 2])
    return [w.star, "-o", w.out, "--map", w.map, "--device", "cpu"]


@case("preprocess", 2, "missing")
def _missing_stack(w, mp):
    (w.sim / "particles.mrcs").rename(w.sim / "moved.mrcs")
    return [w.star, "-o", w.out, "--map", w.map, "--device", "cpu"]


@case("preprocess", 2, "rotation")
def _nan_rotations(w, mp):
    poses = np.zeros((24, 5))
    poses[3, 0] = np.nan
    np.save(w.root / "poses.npy", poses)
    return _drgn_args(w, poses=w.root / "poses.npy")


@case("preprocess", 2, "count")
def _pose_count_mismatch(w, mp):
    from gaussianem.io.pickles import load_pickle

    rot, trans = load_pickle(w.drgn / "poses.pkl")
    return _drgn_args(w, poses=w.write("short.pkl", pickle_bytes((rot[:20], trans[:20]))))


@case("preprocess", 1, "in use")
def _second_writer(w, mp):
    hold_lock(w, w.out, inside=False)
    return [w.star, "-o", w.out, "--map", w.map, "--device", "cpu"]


# ---- fit
@case("fit", 2, "builtins.exec", payload=True)
def _checkpoint_payload(w, mp):
    (w.ds / "fit_checkpoint.pt").write_bytes(torch_bytes({"epoch": 1, "x": w.payload()}))
    return [w.ds, "--resume", "--epochs", "2", "--device", "cpu", "--no-progress"]


@case("fit", 1, "in use")
def _second_writer(w, mp):
    hold_lock(w, w.ds)
    return [w.ds, "--epochs", "1", "--device", "cpu", "--no-progress"]


@case("fit", 2, "particles.mrcs")
def _truncated_particles(w, mp):
    data = (w.ds / "particles.mrcs").read_bytes()
    (w.ds / "particles.mrcs").write_bytes(data[: len(data) // 3])
    return [w.ds, "--epochs", "1", "--device", "cpu", "--no-progress"]


@case("fit", 2, "voltage")
def _ctf_voltage_zero_in_dataset(w, mp):
    edit_npz(w.ds / "ctf.npz", voltage_kv=lambda v: np.zeros_like(v))
    return [w.ds, "--epochs", "1", "--device", "cpu", "--no-progress"]


# ---- train
def _train(w: W, *extra) -> list:
    return [w.ds, "-o", w.out, "--epochs", "1", *TRAIN_ARGS, *extra]


@case("train", 2, "builtins.exec", payload=True)
def _load_payload(w, mp):
    return _train(w, "--load", w.write("evil.pt", torch_bytes({"model": {}, "x": w.payload()})))


@case("train", 2, "builtins.exec", payload=True)
def _resume_payload(w, mp):
    state = torch.load(w.run / "weights.1.pt", weights_only=True)
    state["trainer"] = w.payload()
    (w.run / "weights.1.pt").write_bytes(torch_bytes(state))
    return [w.ds, "-o", w.run, "--resume", "--epochs", "2", "--device", "cpu", "--no-progress"]


@case("train", 2, "weights.1.pt")
def _resume_truncated_only_checkpoint(w, mp):
    data = (w.run / "weights.1.pt").read_bytes()
    (w.run / "weights.1.pt").write_bytes(data[: len(data) // 2])
    return [w.ds, "-o", w.run, "--resume", "--epochs", "2", "--device", "cpu", "--no-progress"]


@case("train", 1, "in use")
def _second_writer(w, mp):
    hold_lock(w, w.run)
    return [w.ds, "-o", w.run, "--resume", "--epochs", "2", "--device", "cpu", "--no-progress"]


@case("train", 2, "voltage")
def _ctf_voltage_zero_in_dataset(w, mp):
    edit_npz(w.ds / "ctf.npz", voltage_kv=lambda v: np.zeros_like(v))
    return _train(w)


@case("train", 2, "defocus")
def _ctf_infinite_defocus_in_dataset(w, mp):
    edit_npz(w.ds / "ctf.npz", defocus_u_angstrom=lambda v: np.where(np.arange(len(v)) == 2, np.inf, v))
    return _train(w)


@case("train", 2, "poses.npz")
def _truncated_poses(w, mp):
    (w.ds / "poses.npz").write_bytes((w.ds / "poses.npz").read_bytes()[:100])
    return _train(w)


# ---- analyze
def _analyze(w: W, *extra) -> list:
    return [w.run, "--ksample", "2", "--pc", "1", "--points", "3", "--flex-sample", "8", "--no-umap",
            "--device", "cpu", *extra]


@case("analyze", 2, "builtins.exec", payload=True)
def _weights_payload(w, mp):
    state = torch.load(w.run / "weights.1.pt", weights_only=True)
    state["spec"] = w.payload()
    (w.run / "weights.1.pt").write_bytes(torch_bytes(state))
    return _analyze(w)


@case("analyze", 2, "truncated")
def _weights_truncated(w, mp):
    data = (w.run / "weights.1.pt").read_bytes()
    (w.run / "weights.1.pt").write_bytes(data[: len(data) // 2])
    return _analyze(w)


@case("analyze", 2, "non-finite")
def _nan_latents(w, mp):
    z = np.load(w.run / "z.1.npy")
    z[3, 0] = np.nan
    np.save(w.run / "z.1.npy", z)
    return _analyze(w)


@case("analyze", 2, "z.1.npy")
def _object_latents(w, mp):
    np.save(w.run / "z.1.npy", np.array([[1, "a"]] * 24, dtype=object), allow_pickle=True)
    return _analyze(w)


@case("analyze", 2, "rows")
def _latent_row_count(w, mp):
    np.save(w.run / "z.1.npy", np.load(w.run / "z.1.npy")[:18])
    return _analyze(w)


@case("analyze", 2, "--overwrite")
def _existing_output_without_overwrite(w, mp):
    (w.run / "analyze.1").mkdir()
    (w.run / "analyze.1" / "mine.txt").write_text("keep me")
    return _analyze(w)


@case("analyze", 1, "in use")
def _second_writer(w, mp):
    hold_lock(w, w.out, inside=False)
    return _analyze(w, "-o", w.out)


@case("analyze", 2, "no checkpoint")
def _run_without_weights(w, mp):
    (w.run / "weights.1.pt").unlink()
    return _analyze(w)


# ---- eval-vol
def _ev(w: W, *extra) -> list:
    return [w.run, "-o", w.out, "--device", "cpu", *extra]


@case("eval-vol", 2, "builtins.exec", payload=True)
def _weights_payload(w, mp):
    state = torch.load(w.run / "weights.1.pt", weights_only=True)
    state["model"] = {"w": w.payload()}
    (w.run / "weights.1.pt").write_bytes(torch_bytes(state))
    return _ev(w, "--z", "0,0")


@case("eval-vol", 2, "builtins.exec", payload=True)
def _particles_pickle_payload(w, mp):
    return _ev(w, "--particles", w.write("ind.pkl", pickle_bytes(w.payload())))


@case("eval-vol", 2, "z.npy")
def _object_z_file(w, mp):
    np.save(w.root / "z.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    return _ev(w, "--z-file", w.root / "z.npy")


@case("eval-vol", 2, "--overwrite")
def _existing_output_without_overwrite(w, mp):
    w.write("out/mine.txt", "keep me")
    return _ev(w, "--z", "0,0")


@case("eval-vol", 1, "in use")
def _second_writer(w, mp):
    hold_lock(w, w.out, inside=False)
    return _ev(w, "--z", "0,0")


# ---- select
def _sel(w: W, *extra) -> list:
    return [w.star, "-o", w.root / "subset.star", *extra]


@case("select", 2, "builtins.exec", payload=True)
def _labels_pickle_payload(w, mp):
    return _sel(w, "--labels", w.write("labels.pkl", pickle_bytes(w.payload())), "--classes", "1")


@case("select", 2, "builtins.exec", payload=True)
def _indices_pickle_payload(w, mp):
    return _sel(w, "--indices", w.write("ind.pkl", pickle_bytes([w.payload()])))


@case("select", 2, "--overwrite")
def _existing_output_without_overwrite(w, mp):
    w.write("subset.star", "mine")
    return _sel(w, "--indices", w.drgn / "index.npy")


@case("select", 2, "labels")
def _label_row_count(w, mp):
    np.save(w.root / "labels.npy", np.zeros(18, np.int64))
    return _sel(w, "--labels", w.root / "labels.npy", "--classes", "0")


@case("select", 2, "out of range")
def _index_out_of_range(w, mp):
    np.save(w.root / "ind.npy", np.array([0, 99]))
    return _sel(w, "--indices", w.root / "ind.npy")


# ---- simulate
def _simargs(w: W, *extra) -> list:
    return ["--preset", "toy", "-o", w.out, "--n-particles", "8", "--box", "16", "--device", "cpu", *extra]


@case("simulate", 2, "spec.yaml", payload=True)
def _yaml_payload(w, mp):
    text = f"!!python/object/apply:os.system ['touch {w.marker}']\n"
    return [w.write("spec.yaml", text), "-o", w.out]


@case("simulate", 2, "input")
def _overwrite_the_spec_folder(w, mp):
    spec = w.write("specs/spec.yaml", yaml.safe_dump({"preset": "toy", "n_particles": 8, "box": 16}))
    return [spec, "-o", w.root / "specs", "--overwrite", "--device", "cpu"]


# ---- demo
# ---- benchmark
def _bench(w: W, *extra) -> list:
    return ["--truth", w.sim, "-o", w.out, "--device", "cpu", "--n-images", "4", *extra]


@case("benchmark", 2, "builtins.exec", payload=True)
def _external_z_payload(w, mp):
    return _bench(w, "--external-z", w.write("z.pkl", pickle_bytes(w.payload())), "--write-eval-z", w.out)


@case("benchmark", 2, "builtins.exec", payload=True)
def _external_ind_payload(w, mp):
    np.save(w.root / "z.npy", np.zeros((24, 2)))
    return _bench(w, "--external-z", w.root / "z.npy", "--external-ind",
                  w.write("ind.pkl", pickle_bytes(w.payload())), "--write-eval-z", w.out)


@case("benchmark", 2, "builtins.exec", payload=True)
def _weights_payload(w, mp):
    state = torch.load(w.run / "weights.1.pt", weights_only=True)
    state["rng"] = w.payload()
    (w.run / "weights.1.pt").write_bytes(torch_bytes(state))
    return [w.run, *_bench(w)]


@case("benchmark", 2, "non-finite")
def _nan_external_z(w, mp):
    z = np.zeros((24, 2))
    z[1, 1] = np.nan
    np.save(w.root / "z.npy", z)
    return _bench(w, "--external-z", w.root / "z.npy", "--write-eval-z", w.out)


@case("benchmark", 2, "rows")
def _external_z_row_count(w, mp):
    np.save(w.root / "z.npy", np.zeros((18, 2)))
    return _bench(w, "--external-z", w.root / "z.npy", "--write-eval-z", w.out)


@case("benchmark", 2, "--overwrite")
def _existing_output_without_overwrite(w, mp):
    w.write("out/mine.txt", "keep me")
    return [w.run, *_bench(w)]


# cases where writing fails: (command, exit code, words of the message, name, errno, writes that succeed first,
# the arguments after the command)
FAILED_WRITE_CASES = [
    ("preprocess", 1, "no space left", "disk_full", errno.ENOSPC, 2,
     lambda w: [w.star, "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "permission denied", "output_not_writable", errno.EACCES, 0,
     lambda w: [w.star, "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("fit", 1, "no space left", "disk_full", errno.ENOSPC, 0,
     lambda w: [w.ds, "-o", w.out, "--epochs", "1", "--device", "cpu", "--no-progress"]),
    ("train", 1, "no space left", "disk_full", errno.ENOSPC, 3, lambda w: _train(w)),
    ("train", 2, "permission denied", "output_not_writable", errno.EACCES, 0, lambda w: _train(w)),
    ("analyze", 1, "no space left", "disk_full_midway", errno.ENOSPC, 4, lambda w: _analyze(w, "-o", w.out)),
    ("eval-vol", 1, "no space left", "disk_full", errno.ENOSPC, 1, lambda w: _ev(w, "--z", "0,0;1,1;2,2")),
    ("select", 1, "no space left", "disk_full", errno.ENOSPC, 0, lambda w: _sel(w, "--indices", w.drgn / "index.npy")),
    ("select", 2, "permission denied", "output_not_writable", errno.EACCES, 0,
     lambda w: _sel(w, "--indices", w.drgn / "index.npy")),
    ("simulate", 1, "no space left", "disk_full", errno.ENOSPC, 2, lambda w: _simargs(w)),
    ("demo", 1, "no space left", "disk_full", errno.ENOSPC, 2,
     lambda w: ["-o", w.out, "--n-particles", "12", "--box", "16", "--work-box", "16", "--device", "cpu"]),
]


def _failed_write_case(err: int, after: int, build):
    def setup(w, mp):
        fail_writes(mp, w.root, err, after=after)
        return build(w)
    return setup


for _command, _rc, _needle, _name, _err, _after, _build in FAILED_WRITE_CASES:
    CASES[f"{_command}-{_name}"] = (_command, _rc, _needle, False, _failed_write_case(_err, _after, _build))


# cases that damage one file of the world: (command, exit code, words of the message, name, the file, what is
# written into it, the arguments after the command)
DAMAGED_FILE_CASES = [
    ("fit", 2, "truncated", "checkpoint_truncated", lambda w: w.ds / "fit_checkpoint.pt",
     torch_bytes({"epoch": 1, "w": torch.zeros(1000)})[:500],
     lambda w: [w.ds, "--resume", "--epochs", "2", "--device", "cpu", "--no-progress"]),
    ("fit", 2, "dataset.json", "garbage_manifest", lambda w: w.ds / "dataset.json", b"{not json",
     lambda w: [w.ds, "--epochs", "1", "--device", "cpu", "--no-progress"]),
    ("fit", 2, "gaussians_init.ply", "garbage_ply", lambda w: w.ds / "gaussians_init.ply",
     b"ply\nformat garbage\n" * 10,
     lambda w: [w.ds, "--epochs", "1", "--device", "cpu", "--no-progress"]),
    ("train", 2, "dataset.json", "garbage_manifest", lambda w: w.ds / "dataset.json", b"[1, 2", lambda w: _train(w)),
    ("train", 2, "config.yaml", "resume_garbage_config", lambda w: w.run / "config.yaml", b"epochs: [unclosed\n  - : :",
     lambda w: [w.ds, "-o", w.run, "--resume", "--epochs", "2", "--device", "cpu", "--no-progress"]),
    ("analyze", 2, "z.1.npy", "garbage_latents", lambda w: w.run / "z.1.npy", b"garbage" * 20, lambda w: _analyze(w)),
    ("analyze", 2, "config.yaml", "garbage_config", lambda w: w.run / "config.yaml", b": : [\n", lambda w: _analyze(w)),
    ("select", 2, "dataset.json", "garbage_manifest", lambda w: w.ds / "dataset.json", b"{{",
     lambda w: [w.ds, "-o", w.root / "subset.star", "--indices", w.drgn / "index.npy"]),
    ("benchmark", 2, "truth.npz", "garbage_truth", lambda w: w.sim / "truth.npz", b"garbage" * 50,
     lambda w: [w.run, *_bench(w)]),
]


def _damaged_file_case(file, data: bytes, build):
    def setup(w, mp):
        file(w).write_bytes(data)
        return build(w)
    return setup


for _command, _rc, _needle, _name, _file, _data, _build in DAMAGED_FILE_CASES:
    CASES[f"{_command}-{_name}"] = (_command, _rc, _needle, False, _damaged_file_case(_file, _data, _build))


# one-line cases: (command, exit code, words of the message, name, the arguments after the command)
SIMPLE_CASES = [
    ("analyze", 2, "not a folder", "overwrite_a_file_of_the_run",
     lambda w: _analyze(w, "-o", w.run / "config.yaml", "--overwrite")),
    ("eval-vol", 2, "not a folder", "overwrite_the_weights",
     lambda w: [w.run, "-o", w.run / "weights.1.pt", "--overwrite", "--z", "0,0", "--device", "cpu"]),
    ("preprocess", 2, "truncated", "pose_pickle_truncated",
     lambda w: _drgn_args(w, poses=w.write("trunc.pkl", (w.drgn / "poses.pkl").read_bytes()[:200]))),
    ("preprocess", 2, "python objects", "ctf_pickle_object_array",
     lambda w: _drgn_args(w, ctf=w.write("obj.pkl", pickle_bytes(np.array([[1, "a"]] * 24, dtype=object))))),
    ("preprocess", 2, "(n, 9)", "ctf_pickle_wrong_shape",
     lambda w: _drgn_args(w, ctf=w.write("ctf5.pkl", pickle_bytes(np.ones((24, 5)))))),
    ("preprocess", 2, "garbage.pkl", "pose_pickle_garbage",
     lambda w: _drgn_args(w, poses=w.write("garbage.pkl", b"\x00\x01garbage" * 30))),
    ("preprocess", 2, "input", "overwrite_the_folder_holding_the_inputs",
     lambda w: [w.star, "-o", w.sim, "--map", w.map, "--overwrite", "--device", "cpu"]),
    ("preprocess", 2, "input", "overwrite_a_folder_containing_the_inputs",
     lambda w: [w.star, "-o", w.root, "--map", w.map, "--overwrite", "--device", "cpu"]),
    ("preprocess", 2, "input", "output_is_the_star_file",
     lambda w: [w.star, "-o", w.star, "--map", w.map, "--overwrite", "--device", "cpu"]),
    ("preprocess", 2, "input", "output_is_the_map",
     lambda w: [w.star, "-o", w.map, "--map", w.map, "--overwrite", "--device", "cpu"]),
    ("preprocess", 2, "input", "overwrite_another_dataset_that_is_an_input",
     lambda w: [w.drgn / "particles.mrcs", "-o", w.drgn, "--map", w.map, "--poses", w.drgn / "poses.pkl", "--ctf",
                w.drgn / "ctf.pkl", "--overwrite", "--device", "cpu"]),
    ("preprocess", 2, "--overwrite", "existing_output_without_overwrite",
     lambda w: [w.star, "-o", w.ds, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "not a directory", "output_under_a_file",
     lambda w: [w.star, "-o", w.afile / "x", "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "rlndefocusu", "text_in_a_numeric_column",
     lambda w: [edit_star(w, "rlnDefocusU", 3, "abc"), "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "defocus", "infinite_defocus",
     lambda w: [edit_star(w, "rlnDefocusU", 3, np.inf), "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "defocus", "nan_defocus",
     lambda w: [edit_star(w, "rlnDefocusV", 5, np.nan), "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "voltage", "voltage_zero",
     lambda w: [edit_star(w, "rlnVoltage", 0, 0.0), "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "spherical aberration", "negative_cs",
     lambda w: [edit_star(w, "rlnSphericalAberration", 0, -1.0), "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "amplitude contrast", "amplitude_contrast_one",
     lambda w: [edit_star(w, "rlnAmplitudeContrast", 0, 1.0), "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "amplitude contrast", "negative_amplitude_contrast",
     lambda w: [edit_star(w, "rlnAmplitudeContrast", 0, -0.1), "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "garbage.mrc", "garbage_map",
     lambda w: [w.star, "-o", w.out, "--map", w.write("garbage.mrc", b"not a map" * 200), "--device", "cpu"]),
    ("preprocess", 2, "empty.star", "empty_star",
     lambda w: [w.write("empty.star", ""), "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "garbage.star", "garbage_star",
     lambda w: [w.write("garbage.star", b"\x89PNG\x00\x00garbage\xff" * 50), "-o", w.out, "--map", w.map,
                "--device", "cpu"]),
    ("preprocess", 2, "garbage.cs", "garbage_cs",
     lambda w: [w.write("garbage.cs", b"garbage" * 100), "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "pixel size", "zero_pixel_size",
     lambda w: [edit_star(w, "rlnImagePixelSize", 0, 0.0), "-o", w.out, "--map", w.map, "--device", "cpu"]),
    ("preprocess", 2, "not found", "list_naming_a_missing_stack",
     lambda w: [w.write("list.txt", "nope.mrcs\n"), "-o", w.out, "--map", w.map, "--poses", w.drgn / "poses.pkl",
                "--ctf", w.drgn / "ctf.pkl", "--device", "cpu"]),
    ("preprocess", 2, "--box", "odd_box",
     lambda w: [w.star, "-o", w.out, "--map", w.map, "--box", "15", "--device", "cpu"]),
    ("fit", 2, "resume", "resume_without_checkpoint",
     lambda w: [w.ds, "--resume", "--epochs", "2", "--device", "cpu", "--no-progress"]),
    ("fit", 2, "--epochs", "zero_epochs", lambda w: [w.ds, "--epochs", "0", "--device", "cpu", "--no-progress"]),
    ("fit", 2, "not a directory", "output_under_a_file",
     lambda w: [w.ds, "-o", w.afile / "x", "--epochs", "1", "--device", "cpu", "--no-progress"]),
    ("fit", 2, "input", "output_is_the_map",
     lambda w: [w.ds, "-o", w.map, "--epochs", "1", "--device", "cpu", "--no-progress"]),
    ("train", 2, "truncated", "load_truncated",
     lambda w: _train(w, "--load", w.write("trunc.pt", (w.run / "weights.1.pt").read_bytes()[:1000]))),
    ("train", 2, "--kl-weight", "negative_kl_weight", lambda w: _train(w, "--kl-weight=-1e9")),
    ("train", 2, "--knn-weight", "negative_knn_weight", lambda w: _train(w, "--knn-weight", "-1")),
    ("train", 2, "--encoder-fourier-radius", "zero_encoder_fourier_radius",
     lambda w: _train(w, "--encoder-input", "fourier", "--encoder-fourier-radius", "0")),
    ("train", 2, "--blur-start-angstrom", "negative_blur", lambda w: _train(w, "--blur-start-angstrom=-4")),
    ("train", 2, "--amplitude-ramp-steps", "negative_amplitude_ramp",
     lambda w: _train(w, "--amplitude-ramp-steps=-1")),
    ("train", 2, "--displacement-dims", "latent_split_beyond_zdim", lambda w: _train(w, "--displacement-dims", "99")),
    ("train", 2, "--decoder control", "latent_split_with_the_pair_decoder",
     lambda w: _train(w, "--decoder", "pair", "--displacement-dims", "1")),
    ("train", 2, "--readout-control", "control_read_out_with_the_pair_decoder",
     lambda w: _train(w, "--decoder", "pair", "--readout-control")),
    ("train", 2, "--split-release-steps", "split_release_without_a_split",
     lambda w: _train(w, "--split-release-steps", "100")),
    ("train", 2, "--kl-start-weight", "kl_ramp_at_the_end", lambda w: _train(w, "--kl-start-weight", "4e-6",
                                                                            "--kl-ramp-start", "1")),
    ("train", 2, "--kl-warmup-steps", "negative_kl_warmup", lambda w: _train(w, "--kl-warmup-steps=-5")),
    ("train", 2, "--kl-displacement-scale", "nan_kl_displacement_scale",
     lambda w: _train(w, "--kl-displacement-scale", "nan")),
    ("train", 2, "--kl-displacement-scale", "kl_displacement_scale_without_a_split",
     lambda w: _train(w, "--kl-displacement-scale", "2")),
    ("train", 2, "--kl-displacement-scale-start-steps", "kl_displacement_scale_start_without_a_scale",
     lambda w: _train(w, "--kl-displacement-scale-start-steps", "100")),
    ("train", 2, "--lr-decay-fraction", "zero_lr_decay", lambda w: _train(w, "--lr-schedule", "wsd",
                                                                           "--lr-decay-fraction", "0")),
    ("train", 2, "--repulsion-weight", "nan_repulsion_weight", lambda w: _train(w, "--repulsion-weight", "nan")),
    ("train", 2, "--smoothness-weight", "infinite_smoothness_weight",
     lambda w: _train(w, "--smoothness-weight", "inf")),
    ("train", 2, "--overwrite", "finished_run_without_overwrite",
     lambda w: [w.ds, "-o", w.run, "--epochs", "1", *TRAIN_ARGS]),
    ("train", 2, "input", "overwrite_the_dataset",
     lambda w: [w.ds, "-o", w.ds, "--epochs", "1", "--overwrite", *TRAIN_ARGS]),
    ("train", 2, "input", "overwrite_a_folder_containing_the_dataset",
     lambda w: [w.ds, "-o", w.root, "--epochs", "1", "--overwrite", *TRAIN_ARGS]),
    ("train", 2, "not a directory", "output_under_a_file",
     lambda w: [w.ds, "-o", w.afile / "x", "--epochs", "1", *TRAIN_ARGS]),
    ("train", 2, "garbage.ply", "garbage_gaussians",
     lambda w: _train(w, "--gaussians", w.write("garbage.ply", b"\x00\x01\x02" * 100))),
    ("train", 2, "--batch-size", "batch_size_one",
     lambda w: [w.ds, "-o", w.out, "--epochs", "1", *TRAIN_ARGS, "--batch-size", "1"]),
    ("analyze", 2, "--points", "zero_points",
     lambda w: _analyze(w)[:5] + ["--points", "0", "--flex-sample", "8", "--no-umap", "--device", "cpu"]),
    ("analyze", 2, "--ksample", "zero_ksample", lambda w: [w.run, "--ksample", "0", "--no-umap", "--device", "cpu"]),
    ("analyze", 2, "input", "overwrite_the_run_folder", lambda w: _analyze(w, "-o", w.run, "--overwrite")),
    ("analyze", 2, "input", "overwrite_a_folder_containing_the_run",
     lambda w: _analyze(w, "-o", w.root, "--overwrite")),
    ("analyze", 2, "not a directory", "output_under_a_file", lambda w: _analyze(w, "-o", w.afile / "x")),
    ("analyze", 2, "garbage.pdb", "garbage_atomic_model",
     lambda w: _analyze(w, "--atomic-model", w.write("garbage.pdb", b"\x00garbage\xff" * 30))),
    ("analyze", 2, "epoch 7", "missing_epoch", lambda w: _analyze(w, "--epoch", "7")),
    ("analyze", 2, "--box", "negative_box", lambda w: _analyze(w, "--box", "-4")),
    ("eval-vol", 2, "non-finite", "nan_z", lambda w: _ev(w, "--z", "nan,0")),
    ("eval-vol", 2, "non-finite", "infinite_z", lambda w: _ev(w, "--z", "0,inf")),
    ("eval-vol", 2, "non-finite", "nan_z_file", lambda w: _ev(w, "--z-file", w.write("z.txt", "0 0\nnan 1\n"))),
    ("eval-vol", 2, "truncated", "particles_pickle_truncated",
     lambda w: _ev(w, "--particles", w.write("ind.pkl", pickle_bytes(np.arange(5))[:30]))),
    ("eval-vol", 2, "outside", "particle_out_of_range", lambda w: _ev(w, "--particles", "999")),
    ("eval-vol", 2, "input", "overwrite_the_run_folder",
     lambda w: [w.run, "-o", w.run, "--overwrite", "--z", "0,0", "--device", "cpu"]),
    ("eval-vol", 2, "not a directory", "output_under_a_file",
     lambda w: [w.run, "-o", w.afile / "x", "--z", "0,0", "--device", "cpu"]),
    ("eval-vol", 2, "--format", "bad_format", lambda w: _ev(w, "--z", "0,0", "--format", "tiff")),
    ("eval-vol", 2, "zdim", "wrong_z_count", lambda w: _ev(w, "--z", "0,0,0")),
    ("eval-vol", 2, "z.txt", "garbage_z_file", lambda w: _ev(w, "--z-file", w.write("z.txt", "zero one\n"))),
    ("select", 2, "input", "output_is_the_source",
     lambda w: [w.star, "-o", w.star, "--indices", w.drgn / "index.npy", "--overwrite"]),
    ("select", 2, "input", "output_is_the_dataset_source",
     lambda w: [w.ds, "-o", w.star, "--indices", w.drgn / "index.npy", "--overwrite"]),
    ("select", 2, "not a directory", "output_under_a_file",
     lambda w: [w.star, "-o", w.afile / "x.star", "--indices", w.drgn / "index.npy"]),
    ("select", 2, "truncated", "labels_pickle_truncated",
     lambda w: _sel(w, "--labels", w.write("labels.pkl", pickle_bytes(np.zeros(24, np.int64))[:40]), "--classes", "0")),
    ("select", 2, "garbage.star", "garbage_source",
     lambda w: [w.write("garbage.star", b"\x00\xff" * 100), "-o", w.root / "subset.star", "--indices",
                w.drgn / "index.npy"]),
    ("select", 2, "python objects", "indices_object_array_pickle",
     lambda w: _sel(w, "--indices", w.write("ind.pkl", pickle_bytes(np.array([1, "x"], dtype=object))))),
    ("simulate", 2, "not a directory", "output_under_a_file",
     lambda w: ["--preset", "toy", "-o", w.afile / "x", "--n-particles", "8", "--box", "16", "--device", "cpu"]),
    ("simulate", 2, "--overwrite", "existing_output_without_overwrite",
     lambda w: ["--preset", "toy", "-o", w.sim, "--n-particles", "8", "--box", "16", "--device", "cpu"]),
    ("simulate", 2, "spec.yaml", "garbage_spec", lambda w: [w.write("spec.yaml", "a: [\n"), "-o", w.out]),
    ("simulate", 2, "n_particles", "zero_particles",
     lambda w: ["--preset", "toy", "-o", w.out, "--n-particles", "0", "--box", "16", "--device", "cpu"]),
    ("simulate", 2, "box", "odd_box",
     lambda w: ["--preset", "toy", "-o", w.out, "--n-particles", "8", "--box", "15", "--device", "cpu"]),
    ("simulate", 2, "snr", "negative_snr", lambda w: _simargs(w, "--snr", "-1")),
    ("simulate", 2, "apix", "zero_apix", lambda w: _simargs(w, "--apix", "0")),
    ("demo", 2, "not a directory", "output_under_a_file",
     lambda w: ["-o", w.afile / "x", "--n-particles", "12", "--box", "16", "--work-box", "16"]),
    ("demo", 2, "--n-particles", "zero_particles", lambda w: ["-o", w.out, "--n-particles", "0"]),
    ("demo", 2, "--overwrite", "existing_foreign_output",
     lambda w: ["-o", w.sim, "--n-particles", "12", "--box", "16", "--work-box", "16", "--device", "cpu"]),
    ("benchmark", 2, "truth.npz", "missing_truth",
     lambda w: [w.run, "--truth", w.root / "nope", "-o", w.out, "--device", "cpu"]),
    ("benchmark", 2, "not a directory", "output_under_a_file",
     lambda w: [w.run, "--truth", w.sim, "-o", w.afile / "x", "--device", "cpu", "--n-images", "4"]),
    ("benchmark", 2, "--n-images", "zero_images", lambda w: [w.run, "--truth", w.sim, "-o", w.out, "--n-images", "0"]),
]
for _command, _rc, _needle, _name, _build in SIMPLE_CASES:
    CASES[f"{_command}-{_name}"] = (_command, _rc, _needle, False, lambda w, mp, b=_build: b(w))


# ------------------------------------------------------------------------------------------------- the test

@pytest.fixture
def workspace(world, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(world, root, symlinks=True)
    for rel in ("ds/dataset.json", "run/config.yaml"):  # paths recorded inside: point them at the copy
        f = root / rel
        f.write_text(f.read_text().replace(str(world), str(root)))
    with contextlib.ExitStack() as stack:
        yield W(root=root, marker=tmp_path / "PAYLOAD_RAN", stack=stack)


def test_enough_cases():
    assert len(CASES) >= 80
    assert {c[0] for c in CASES.values()} == {"preprocess", "fit", "train", "analyze", "eval-vol", "select",
                                               "simulate", "demo", "benchmark"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(name, workspace, monkeypatch, capsys):
    command, rc, needle, payload, build = CASES[name]
    w = workspace
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with monkeypatch.context() as mp:
            argv = [command] + [str(a) for a in build(w, mp)]
            before = snapshot(w.root)
            capsys.readouterr()
            code = cli_main(argv)
        err = capsys.readouterr().err
    finally:
        torch.set_num_threads(n_threads)
    after = snapshot(w.root)
    lines = [ln for ln in err.splitlines() if ln.startswith("gaussianem ")]
    record = os.environ.get("GAUSSIANEM_RELIABILITY_LOG")  # docs/RELIABILITY.md is made from these records
    if record:
        import json

        with open(record, "a") as f:
            f.write(json.dumps({"case": name, "rc": code, "line": lines[0].replace(str(w.root), "WS")
                                if lines else err.strip()[-300:]}) + "\n")
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith(f"gaussianem {command}: error: "), err
    assert needle.lower() in lines[0].lower(), lines[0]
    assert code == rc, lines[0]
    assert after == before, {k for k in set(after) ^ set(before)} | {k for k in after if after.get(k) != before.get(k)}
    if payload:
        assert not w.marker.exists(), "the payload ran"
    assert not w.marker.exists()


# ------------------------------------------------------------------------------------------- what must still work

def _run(argv: list) -> int:
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cli_main([str(a) for a in argv])
    finally:
        torch.set_num_threads(n_threads)


def test_restricted_unpickler_reads_cryodrgn_files(tmp_path):
    """What cryoDRGN writes (pose tuple, CTF array, index array/list, labels, z) loads under every protocol."""
    from gaussianem.io.pickles import load_pickle

    rot = np.repeat(np.eye(3)[None], 4, 0)
    objects = {"poses": (rot, np.zeros((4, 2))), "ctf": np.ones((4, 9), np.float32), "ind": np.arange(4),
               "ind_list": [0, 2], "labels": np.array([0, 1, 1, 0]), "scalar": np.float64(2.5), "dict": {"a": [1]}}
    for proto in (2, 3, 4, 5):
        for name, obj in objects.items():
            path = tmp_path / f"{name}{proto}.pkl"
            path.write_bytes(pickle.dumps(obj, protocol=proto))
            got = load_pickle(path)
            if isinstance(obj, tuple):
                assert all(np.array_equal(a, b) for a, b in zip(got, obj, strict=True))
            elif isinstance(obj, np.ndarray):
                assert np.array_equal(got, obj) and got.dtype == obj.dtype
            else:
                assert got == obj


def test_old_checkpoint_format_still_loads_and_resumes(workspace, capsys):
    """A checkpoint of an older version (numpy RNG state inside) loads safely and --resume continues from it."""
    from gaussianem.io.checkpoints import decode_rng

    w = workspace
    state = torch.load(w.run / "weights.1.pt", weights_only=True)
    state["rng"] = decode_rng(state["rng"])  # numpy and Python RNG states as tuples, as older versions saved
    assert isinstance(state["rng"]["numpy"][1], np.ndarray)
    torch.save(state, w.run / "weights.1.pt")
    assert _run(["train", w.ds, "-o", w.run, "--resume", "--epochs", "2", "--device", "cpu", "--no-progress"]) == 0
    assert (w.run / "weights.2.pt").is_file()
    torch.load(w.run / "weights.2.pt", weights_only=True)  # the new checkpoint needs no allow-list at all


def test_resume_skips_a_truncated_newest_checkpoint_and_names_it(workspace, tmp_path, caplog):
    """--resume uses the newest checkpoint that loads; the run ends as an uninterrupted one does, bit for bit."""
    w = workspace
    ref, run = tmp_path / "ref", tmp_path / "resumed"
    assert _run(["train", w.ds, "-o", ref, "--epochs", "3", *TRAIN_ARGS]) == 0
    assert _run(["train", w.ds, "-o", run, "--epochs", "3", *TRAIN_ARGS]) == 0
    data = (run / "weights.3.pt").read_bytes()
    (run / "weights.3.pt").write_bytes(data[: len(data) // 2])
    caplog.set_level("WARNING")
    assert _run(["train", w.ds, "-o", run, "--resume", "--epochs", "3", "--device", "cpu", "--no-progress"]) == 0
    assert "skipped weights.3.pt" in caplog.text
    a = torch.load(ref / "weights.3.pt", weights_only=True)["model"]
    b = torch.load(run / "weights.3.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(np.load(ref / "z.3.npy"), np.load(run / "z.3.npy"))


_KILL_IN_SAVE = """
import os, signal, sys
import torch
real = torch.save
def save(obj, f, *a, **k):
    if isinstance(obj, dict) and obj.get("epoch") == 3 and "trainer" in obj:
        real(obj, f, *a, **k)
        with open(f, "r+b") as h:  # half of the file is on disk when the process dies
            h.truncate(os.path.getsize(f) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(obj, f, *a, **k)
torch.save = save
from gaussianem.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_while_a_checkpoint_is_written_then_resume_matches(world, tmp_path):
    """`train` killed (SIGKILL) while writing its third checkpoint: the half-written file never takes the final
    name, the next start removes it, and --resume from epoch 2 ends bit-identical to an uninterrupted run."""
    import signal
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full, killed = tmp_path / "full", tmp_path / "killed"
    args = ["train", str(world / "ds"), "--epochs", "4", *TRAIN_ARGS]
    subprocess.run([sys.executable, "-m", "gaussianem", *args, "-o", str(full)], check=True, env=env,
                   capture_output=True)
    proc = subprocess.run([sys.executable, "-c", _KILL_IN_SAVE, *args, "-o", str(killed)], env=env,
                          capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert (killed / "weights.2.pt").is_file() and not (killed / "weights.3.pt").exists()
    leftovers = [p for p in killed.iterdir() if ".tmp" in p.name]
    assert leftovers, "the kill should leave the temporary checkpoint"
    resumed = subprocess.run([sys.executable, "-m", "gaussianem", "train", str(world / "ds"), "-o", str(killed),
                              "--resume", "--epochs", "4", "--device", "cpu", "--no-progress"], env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not [p for p in killed.iterdir() if ".tmp" in p.name or p.name.endswith(".lock")]
    for epoch in (3, 4):
        a = torch.load(full / f"weights.{epoch}.pt", weights_only=True)["model"]
        b = torch.load(killed / f"weights.{epoch}.pt", weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)
        np.testing.assert_array_equal(np.load(full / f"z.{epoch}.npy"), np.load(killed / f"z.{epoch}.npy"))


def test_mrc_stack_without_map_id_is_read_with_a_warning(workspace, caplog):
    w = workspace
    stack = w.drgn / "particles.mrcs"
    data = bytearray(stack.read_bytes())
    data[208:212] = b"\x00\x00\x00\x00"  # the 'MAP ' id string, absent in older software's stacks
    stack.write_bytes(bytes(data))
    caplog.set_level("WARNING")
    assert _run(["preprocess", *_drgn_args(w)]) == 0
    assert "lacks the 'MAP ' id string" in caplog.text
    assert (w.out / "dataset.json").is_file()


def test_eval_vol_takes_a_long_list_of_particles(workspace):
    w = workspace
    indices = ",".join(str(i % 24) for i in range(300))  # far beyond a file name's 255 bytes
    assert _run(["eval-vol", w.run, "--particles", indices, "-o", w.out, "--device", "cpu"]) == 0
    assert len(list(w.out.glob("vol_*.mrc"))) == 300


def test_drop_bad_drops_an_extreme_pixel(workspace, caplog):
    w = workspace
    _extreme_pixel(w, None)
    caplog.set_level("WARNING")
    assert _run(["preprocess", w.sim / "hot.star", "-o", w.out, "--map", w.map, "--device", "cpu",
                 "--drop-bad"]) == 0
    from gaussianem.io.dataset import load_dataset

    ds = load_dataset(w.out)
    assert ds.n == 23 and 7 not in ds.source_index.tolist() and "extreme pixels" in caplog.text
    assert ds.manifest["image_std"] < 1e3
    ds.close()


def test_map_pixel_size_mismatch_warns_and_says_what_was_done(workspace, caplog):
    from gaussianem.io.mrc import read_volume, write_volume

    w = workspace
    vol, voxel, _ = read_volume(w.map)
    write_volume(w.root / "coarse.mrc", vol, voxel * 1.5)
    caplog.set_level("WARNING")
    assert _run(["preprocess", w.star, "-o", w.out, "--map", w.root / "coarse.mrc", "--device", "cpu"]) == 0
    assert "differs from the particles' pixel size" in caplog.text and "resampled" in caplog.text


def test_leftovers_of_killed_runs_are_swept_at_the_next_start(workspace):
    w = workspace
    dead = 2**22 + 12345  # beyond any live pid here
    (w.root / f".out.staging-{dead}").mkdir()
    (w.root / f".out.staging-{dead}" / "vol_000.mrc").write_text("partial")
    (w.run / ".weights.2.abcd1234.tmp.pt").write_text("partial")
    assert _run(["eval-vol", w.run, "--z", "0,0", "-o", w.out, "--device", "cpu"]) == 0
    assert not (w.root / f".out.staging-{dead}").exists()
    assert _run(["train", w.ds, "-o", w.run, "--resume", "--epochs", "2", "--device", "cpu", "--no-progress"]) == 0
    assert not (w.run / ".weights.2.abcd1234.tmp.pt").exists()


def test_the_lock_names_the_other_writer(workspace, capsys):
    w = workspace
    hold_lock(w, w.run)
    assert _run(["train", w.ds, "-o", w.run, "--resume", "--epochs", "2", "--device", "cpu"]) == 1
    assert f"pid {os.getpid()}" in capsys.readouterr().err
