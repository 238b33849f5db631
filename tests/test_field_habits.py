"""Habits of the field (issue 18, item 4): one spelling per option across commands with cryoDRGN's as aliases,
--device on every command, --ind, z.E.pkl, train --resume keeping the saved settings, a log in every output folder
and progress bars only on a terminal."""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import starfile
import torch
import yaml
from conftest import SMALL, make_dataset, run, simulate, write_map, write_relion31

from gaussianem.cli import COMMANDS, build_parser
from gaussianem.cli import main as cli_main
from gaussianem.errors import InputError
from gaussianem.io.pickles import load_pickle
from gaussianem.training.config import TrainConfig

# (command, alias, its canonical spelling): the same dest
ALIASES = [
    ("fit", "--out", "--outdir"), ("benchmark", "--out", "--outdir"), ("select", "--output", "--outdir"),
    ("train", "-n", "--epochs"), ("train", "--num-epochs", "--epochs"),
    ("fit", "-n", "--epochs"), ("fit", "--num-epochs", "--epochs"),
    ("select", "--ind", "--indices"), ("eval-vol", "--zfile", "--z-file"),
    ("analyze", "--Apix", "--apix"), ("eval-vol", "--Apix", "--apix"), ("simulate", "--Apix", "--apix"),
    ("preprocess", "-D", "--box"), ("simulate", "-D", "--box"), ("analyze", "--skip-umap", "--no-umap"),
]
DEVICE_ARGS = {  # the least each command needs to reach its --device check
    "preprocess": ["p.star", "-o", "{tmp}/out", "--map", "m.mrc"],
    "fit": ["{tmp}/ds"], "train": ["{tmp}/ds", "-o", "{tmp}/run"], "analyze": ["{tmp}/run"],
    "eval-vol": ["{tmp}/run", "--z", "0", "-o", "{tmp}/out"],
    "simulate": ["--preset", "toy", "-o", "{tmp}/sim", "--n-particles", "10"],
    "demo": ["-o", "{tmp}/demo", "--n-particles", "10"], "benchmark": ["{tmp}/run", "--truth", "{tmp}/sim"],
    "view": ["{tmp}/run"],
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def test_every_command_takes_o_outdir():
    parsers = _subparsers()
    assert set(parsers) == set(COMMANDS)
    for name, parser in parsers.items():  # every command writes an output folder or file
        action = _action(parser, "--outdir")
        assert "-o" in action.option_strings, name


@pytest.mark.parametrize(("command", "alias", "canonical"), ALIASES)
def test_aliases_map_to_the_same_dest(command, alias, canonical):
    parser = _subparsers()[command]
    assert _action(parser, alias).dest == _action(parser, canonical).dest


def test_old_and_cryodrgn_spellings_parse_to_the_same_settings():
    parser = build_parser()
    a = parser.parse_args(["fit", "ds", "--out", "X", "-n", "4"])
    b = parser.parse_args(["fit", "ds", "-o", "X", "--epochs", "4"])
    assert (a.out, a.epochs) == (b.out, b.epochs) == ("X", 4)
    a = parser.parse_args(["select", "ds", "--ind", "i.pkl", "--output", "o.star"])
    assert (a.indices, a.output) == (Path("i.pkl"), Path("o.star"))
    assert parser.parse_args(["benchmark", "--truth", "t", "--out", "B"]).out == Path("B")
    assert parser.parse_args(["analyze", "run", "--skip-umap"]).no_umap is True
    assert parser.parse_args(["train", "ds", "-o", "r", "--num-epochs", "7"]).epochs == 7
    assert parser.parse_args(["fit", "ds"]).out is None  # a hidden alias brings no default of its own
    for name, parser_ in _subparsers().items():  # the old spellings stay out of --help
        assert "--output" not in parser_.format_help() and " --out " not in parser_.format_help(), name


@pytest.mark.parametrize("command", sorted(DEVICE_ARGS))
def test_an_absent_device_is_one_line_exit_2(command, tmp_path, capsys):
    if command == "view":  # the view checks for its optional extra first
        pytest.importorskip("dash", reason="the view extra (gaussianem[view]) is not installed")
    absent = f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 7}"
    argv = [a.format(tmp=tmp_path) for a in DEVICE_ARGS[command]]
    rc = cli_main([command, *argv, "--device", absent])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and absent in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "demo").exists()  # a demo that stopped at once leaves nothing


# ------------------------------------------------------------------------------------------- --ind in preprocess


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proj")
    sim = simulate(30, 24, 2.5, seed=5)
    return write_relion31(tmp / "proj", sim), write_map(tmp / "map.mrc", sim)


def test_preprocess_ind_keeps_the_rows_and_select_maps_back(project, tmp_path):
    star_path, mp = project
    ind = np.array([3, 0, 17, 29, 8])
    with open(tmp_path / "ind.pkl", "wb") as f:
        pickle.dump(ind, f)  # cryoDRGN's index file: a pickled numpy int array
    out = tmp_path / "ds"
    argv = ["preprocess", str(star_path), "-o", str(out), "--map", str(mp), "-D", "16", "--device", "cpu"]
    assert cli_main([*argv, "--ind", str(tmp_path / "ind.pkl")]) == 0
    np.testing.assert_array_equal(np.load(out / "source_index.npy"), ind)
    full = run(tmp_path, star_path, mp, out="full", box=16)
    from gaussianem.io.dataset import load_dataset

    a, b = load_dataset(out), load_dataset(full)
    assert a.n == len(ind)
    np.testing.assert_array_equal(np.asarray(a.images), np.asarray(b.images)[ind])
    np.testing.assert_allclose(a.rotations, b.rotations[ind])
    # select maps dataset particles back to the source's rows
    np.save(tmp_path / "pick.npy", np.array([1, 3]))
    assert cli_main(["select", str(out), "--ind", str(tmp_path / "pick.npy"), "-o", str(tmp_path / "s.star")]) == 0
    orig, sub = starfile.read(star_path)["particles"], starfile.read(tmp_path / "s.star")["particles"]
    assert sub["rlnImageName"].tolist() == orig["rlnImageName"].iloc[[0, 29]].tolist()
    # ... or as a cryoDRGN index .pkl of those rows
    assert cli_main(["select", str(out), "--ind", str(tmp_path / "pick.npy"), "-o", str(tmp_path / "s.pkl")]) == 0
    assert load_pickle(tmp_path / "s.pkl").tolist() == [0, 29]
    # the log of the command is in its output folder
    text = (out / "gaussianem.log").read_text()
    assert "gaussianem preprocess" in text and "--ind" in text and "=== exit 0" in text


@pytest.mark.parametrize(("values", "cause"), [([0, 30], "out of range"), ([1, 2, 1], "duplicate"),
                                                ([-1], "out of range")])
def test_preprocess_ind_refuses_bad_indices(project, tmp_path, capsys, values, cause):
    star_path, mp = project
    np.save(tmp_path / "ind.npy", np.array(values))
    rc = cli_main(["preprocess", str(star_path), "-o", str(tmp_path / "ds"), "--map", str(mp), "--box", "16",
                   "--ind", str(tmp_path / "ind.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and cause in err[0], err
    assert not (tmp_path / "ds").exists()


# ----------------------------------------------------------------------------- train: --ind, z.E.pkl, --resume


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    make_dataset(root, n=64)
    return root


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_ind_trains_on_the_subset(dataset, tmp_path):
    from gaussianem.io.dataset import load_dataset
    from gaussianem.model.load import load_model
    from gaussianem.training.loop import train

    ind = np.array([5, 60, 2, 33, 17, 40, 9, 12, 50, 1, 0, 63, 20, 21, 30, 31, 44, 45])
    with open(tmp_path / "ind.pkl", "wb") as f:
        pickle.dump(ind, f)
    run_dir = tmp_path / "run"
    train(TrainConfig(dataset=str(dataset), rundir=str(run_dir), **{**SMALL, "epochs": 1},
                      ind=str(tmp_path / "ind.pkl")))
    z = np.load(run_dir / "z.1.npy")
    assert z.shape == (len(ind), 2)
    model, cfg, _ = load_model(run_dir)
    assert cfg["n_particles"] == len(ind)
    images = torch.from_numpy(np.asarray(load_dataset(dataset).images)[ind[:4]])
    mu, _ = model.encode(images)
    np.testing.assert_allclose(mu.detach().numpy(), z[:4], rtol=1e-4, atol=1e-5)  # row i is particle ind[i]
    np.save(tmp_path / "dup.npy", np.array([1, 1]))
    with pytest.raises(InputError, match="duplicate"):
        train(TrainConfig(dataset=str(dataset), rundir=str(tmp_path / "r2"), **SMALL, ind=str(tmp_path / "dup.npy")))


def test_resume_keeps_the_saved_settings_and_writes_z_pkl(dataset, tmp_path, capsys):
    from gaussianem.training.loop import train

    run_dir = tmp_path / "run"
    saved = TrainConfig(dataset=str(dataset), rundir=str(run_dir), **{**SMALL, "epochs": 2, "lr": 2e-3})
    train(saved, stop_after_epoch=1)  # an interrupted run: 1 of its 2 epochs
    assert not (run_dir / "weights.2.pt").exists()
    base = ["train", str(dataset), "-o", str(run_dir), "--resume"]
    assert cli_main([*base, "--zdim", "3"]) == 2  # the model's shape is the run's
    assert "zdim" in capsys.readouterr().err
    assert cli_main([*base, "--num-workers", "0"]) == 0  # --resume alone: the saved 2 epochs, not the default 20
    assert (run_dir / "weights.2.pt").is_file() and not (run_dir / "weights.3.pt").exists()
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (cfg["epochs"], cfg["lr"], cfg["zdim"], cfg["encoder_hidden"]) == (2, 2e-3, 2, 128)
    text = (run_dir / "gaussianem.log").read_text()
    assert "gaussianem train" in text and "--resume" in text and "=== exit 0" in text
    assert "kept:" in text and "epochs=2" in text and "lr=0.002" in text
    # z.E.pkl beside z.E.npy: cryoDRGN's plain pickled float32 array
    for epoch in (1, 2):
        z = np.load(run_dir / f"z.{epoch}.npy")
        with open(run_dir / f"z.{epoch}.pkl", "rb") as f:
            zp = pickle.load(f)
        assert zp.dtype == np.float32
        np.testing.assert_array_equal(zp, z)
        np.testing.assert_array_equal(load_pickle(run_dir / f"z.{epoch}.pkl"), z)


def test_redirected_stderr_holds_no_progress_bar_and_the_log_is_written(dataset, tmp_path):
    run_dir = tmp_path / "run"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items() if k not in ("progress", "device")]
    err_path = tmp_path / "stderr.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parents[1] / "src"),
                                                                   os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "1"}
    with open(err_path, "w") as err:
        proc = subprocess.run([sys.executable, "-m", "gaussianem", "train", str(dataset), "-o", str(run_dir),
                               "--epochs", "1", "--device", "cpu", *flags], stderr=err, stdout=subprocess.PIPE,
                              env=env, timeout=600)
    text = err_path.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text and "epoch 1: loss" in text
    log_text = (run_dir / "gaussianem.log").read_text()
    assert "gaussianem train " in log_text and "epoch 1: loss" in log_text and "\r" not in log_text


def test_view_subset_of_an_ind_run_names_the_dataset_particles(project, tmp_path):
    from types import SimpleNamespace

    from gaussianem.view.session import ViewSession

    star_path, mp = project
    ds = run(tmp_path, star_path, mp, box=16)
    np.save(tmp_path / "ind.npy", np.array([4, 9, 2]))
    session = SimpleNamespace(config={"dataset": str(ds), "ind": str(tmp_path / "ind.npy")}, rundir=tmp_path,
                              dataset_dir=lambda: ds)
    assert ViewSession.write_subset(session, np.array([0, 2]), tmp_path / "lasso.pkl") == 2
    assert load_pickle(tmp_path / "lasso.pkl").tolist() == [4, 2]  # latent rows 0, 2 -> dataset rows 4, 2


def test_readme_quick_start_holds_the_cpu_hint_and_the_ci_test_command():
    """The quick start's first block sets up and runs the demo, with the CPU build of torch inside it for CPU
    machines; the second block is the test command, the one `.ci/run` runs."""
    import re

    root = Path(__file__).resolve().parents[1]
    blocks = re.findall(r"```bash\n(.*?)```", (root / "README.md").read_text(), flags=re.S)
    first, second = blocks[0], blocks[1].strip()
    assert "gaussianem demo" in first and "pip install -e" in first
    cpu_lines = [line for line in first.splitlines() if "download.pytorch.org/whl/cpu" in line]
    assert cpu_lines and all("gaussianem demo" in line for line in cpu_lines)
    assert second.startswith("python -m pytest") and second in (root / ".ci" / "run").read_text()
