"""Training loop: two epochs on a tiny synthetic dataset, outputs, resume, non-finite detection, refusal."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch
from conftest import APIX, BOX, SMALL, make_dataset, tiny_cloud

from gaussianem.errors import InputError
from gaussianem.io.checkpoints import load_state
from gaussianem.io.dataset import write_ctf
from gaussianem.io.writes import write_json_atomic
from gaussianem.physics.rotation import random_rotations
from gaussianem.training.config import TrainConfig
from gaussianem.training.objective import LOSS_TERMS


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ds")
    truth = make_dataset(root, n=192)
    return root, truth


def _cfg(ds: Path, run: Path, **kw) -> TrainConfig:
    return TrainConfig(dataset=str(ds), rundir=str(run), **{**SMALL, **kw})


def _epochs(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "epoch"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def finished_run(dataset, tmp_path_factory) -> Path:
    from gaussianem.training.loop import train

    run = tmp_path_factory.mktemp("run") / "full"
    train(_cfg(dataset[0], run, epochs=2))
    return run


def test_encoder_centre_run_encodes_centred_particles_and_resumes_with_it(dataset, tmp_path):
    # --encoder-centre end to end: the saved spec and config say so, the epoch's latents are those of the centred
    # images (the model's own encode with the dataset's shifts), and a resume keeps the choice
    from gaussianem.io.dataset import load_dataset
    from gaussianem.model.load import load_model
    from gaussianem.training.loop import train

    run = train(_cfg(dataset[0], tmp_path / "run", epochs=1, encoder_centre=True))
    model, _, _ = load_model(run, 1)
    assert model.spec.encoder_centre
    ds = load_dataset(dataset[0])
    rows = np.arange(8)
    images = torch.as_tensor(np.asarray(ds.images[rows]), dtype=torch.float32)
    shifts = torch.as_tensor(np.asarray(ds.shifts_angstrom[rows]), dtype=torch.float32)
    assert float(shifts.abs().max()) > 0  # the fixture's particles are off-centre
    with torch.no_grad():
        mu, _ = model.eval().encode(images, shifts)
    np.testing.assert_allclose(np.load(run / "z.1.npy")[rows], mu.numpy(), atol=1e-4, rtol=1e-4)
    train(_cfg(dataset[0], tmp_path / "run", epochs=2), resume=True)
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text())["encoder_centre"] is True
    assert load_model(run, 2)[0].spec.encoder_centre


def test_a_linear_amplitude_change_run_trains_saves_and_resumes_with_it(dataset, tmp_path, monkeypatch):
    # --amplitude-change linear end to end: the gain penalty is the log of each gain in the run's mode (at most the
    # change penalty's mean Δa²), the saved spec decodes with the mode, and a resume keeps it whatever the command
    # line says (the weights' Δa mean what they were trained to mean), as --load does unless one is typed
    import yaml

    from gaussianem.gaussians import amplitude_log_gain
    from gaussianem.model.load import load_model
    from gaussianem.training import objective
    from gaussianem.training.loop import train

    modes = set()

    def log_gain(delta, mode):
        modes.add(mode)
        return amplitude_log_gain(delta, mode)

    monkeypatch.setattr(objective, "amplitude_log_gain", log_gain)
    kw = dict(amplitude_change="linear", amplitude_weight=0.1, amplitude_gain_weight=0.1, knn_weight=0.0)
    run = train(_cfg(dataset[0], tmp_path / "run", epochs=1, **kw))
    ep = _epochs(run)
    assert modes == {"linear"} and 0.0 <= ep[0]["amplitude_gain"] <= ep[0]["amplitude"] and ep[0]["amplitude"] > 0
    model, _, _ = load_model(run, 1)
    assert model.spec.amplitude_change == "linear"
    train(_cfg(dataset[0], tmp_path / "run", epochs=2, **{**kw, "amplitude_change": "log"}), resume=True)
    assert yaml.safe_load((run / "config.yaml").read_text())["amplitude_change"] == "linear"
    assert load_model(run, 2)[0].spec.amplitude_change == "linear"
    # --load takes the loaded model's mode unless one is typed; a run without either is "log"
    kw.pop("amplitude_change")
    assert load_model(train(_cfg(dataset[0], tmp_path / "loaded", epochs=1, load=str(run), **kw)), 1)[
        0].spec.amplitude_change == "linear"
    typed = train(_cfg(dataset[0], tmp_path / "typed", epochs=1, load=str(run), amplitude_change="signed", **kw))
    assert yaml.safe_load((typed / "config.yaml").read_text())["amplitude_change"] == "signed"
    plain = train(_cfg(dataset[0], tmp_path / "plain", epochs=1, **kw))
    assert yaml.safe_load((plain / "config.yaml").read_text())["amplitude_change"] == "log"


def test_loss_plot_after_the_first_and_last_epochs_only_when_epochs_are_quick(dataset, tmp_path, monkeypatch):
    # a plot costs 0.2-0.5 s, as much as a GPU epoch of a small dataset: between the first and the last epoch it is
    # redrawn only when PLOT_EVERY_S have passed since the last one
    from gaussianem.training import loop

    monkeypatch.setattr(loop, "PLOT_EVERY_S", 1e9)
    run = loop.train(_cfg(dataset[0], tmp_path / "run", epochs=3))
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["plotted"] for r in records if r["type"] == "epoch_outputs"] == [True, False, True]
    assert (run / "loss.png").is_file()
    monkeypatch.setattr(loop, "PLOT_EVERY_S", 0.0)
    run = loop.train(_cfg(dataset[0], tmp_path / "every", epochs=3))
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["plotted"] for r in records if r["type"] == "epoch_outputs"] == [True, True, True]


def test_two_epochs_outputs_and_loss_goes_down(dataset, finished_run):
    from gaussianem.model.load import load_model

    ds, _ = dataset
    run = finished_run
    for name in ["config.yaml", "weights.1.pt", "weights.2.pt", "log.jsonl", "loss.png", "gaussians_base.ply"]:
        assert (run / name).is_file(), name
    for e in (1, 2):
        assert np.load(run / f"z.{e}.npy").shape == (192, 2)
        assert np.load(run / f"z_logvar.{e}.npy").shape == (192, 2)
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    assert len(steps) == 2 * 12 and [r["step"] for r in steps] == list(range(1, 25))
    first = np.mean([r["render"] for r in steps[:4]])
    last = np.mean([r["render"] for r in steps[-4:]])
    assert last < 0.97 * first, (first, last)
    ep = _epochs(run)
    assert [r["epoch"] for r in ep] == [1, 2] and ep[1]["render"] < ep[0]["render"]
    assert ep[0]["knn"] == 0.0 and ep[1]["knn"] > 0.0  # the kNN term starts after knn_start_epoch
    # the one-off work of the first steps (compilation and capture on CUDA; one step here) apart from the rest
    for r in ep:
        assert r["warmup_steps"] == 1 and 0 < r["warmup_s"] < r["seconds"]
        steady = (r["particles"] - 16) / (r["seconds"] - r["warmup_s"])
        assert r["steady_particles_per_s"] == pytest.approx(steady, rel=0.05)
    # where the time outside the steps goes: one setup record, then latents / checkpoint / plot seconds per epoch
    setup = [r for r in records if r["type"] == "setup"]
    assert len(setup) == 1 and records[0] is setup[0] and setup[0]["seconds"] > 0
    parts = [setup[0][k] for k in ("config_s", "model_s", "stepper_s", "particles_s")]
    assert min(parts) >= 0 and sum(parts) == pytest.approx(setup[0]["seconds"], abs=0.005)
    outputs = [r for r in records if r["type"] == "epoch_outputs"]
    assert [r["epoch"] for r in outputs] == [1, 2]
    assert all(r[k] > 0 for r in outputs for k in ("evaluate_s", "save_s", "plot_s"))
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["box_size"] == BOX and cfg["pixel_size_angstrom"] == APIX and cfg["dataset"] == str(ds)
    assert cfg["version"] and cfg["n_gaussians"] == 66 and cfg["lr"] == 1e-3
    model, cfg2, epoch = load_model(run)
    assert epoch == 2 and cfg2["zdim"] == 2
    assert model.base_cloud.n == 66
    images = torch.from_numpy(np.load(run / "z.2.npy"))  # just for the length
    from gaussianem.io.dataset import load_dataset

    data = load_dataset(ds)
    mu, lv = model.encode(torch.from_numpy(np.array(data.images[:5])))
    np.testing.assert_allclose(mu.detach().numpy(), np.load(run / "z.2.npy")[:5], rtol=1e-4, atol=1e-5)
    pos, wid, amp = model.decode(mu)
    assert pos.shape == (5, 66, 3) and wid.shape == (5, 66) and amp.shape == (5, 66)
    assert len(images) == 192
    # the learned rates really are the CLI's: AdamW's param group starts at lr = 1e-3, and the default wsd schedule
    # has decayed it to 0 by the run's last step
    group = load_state(run / "weights.2.pt")["trainer"]["optimizer"]["param_groups"][0]
    assert group["initial_lr"] == 1e-3 and group["lr"] == pytest.approx(0.0, abs=1e-12)


def test_resume_is_exact(dataset, finished_run, tmp_path):
    """A run interrupted after its first epoch and resumed (the default wsd rate, which follows --epochs) ends as the
    uninterrupted run, step for step; a finished constant-rate run extended with --resume --epochs 2 is the 2-epoch
    run."""
    from gaussianem.cli import main
    from gaussianem.training.loop import train

    ds, _ = dataset
    run = tmp_path / "resumed"
    base = ["train", str(ds), "-o", str(run), "--device", "cpu", "--num-workers", "0", "--no-progress"]
    sizes = ["--encoder-hidden", "128", "--gaussian-hidden", "32", "--decoder-hidden", "32", "--decoder-features",
             "64", "--embedding-dim", "8", "--zdim", "2", "--batch-size", "16", "--lr", "1e-3",
             "--knn-start-epoch", "1", "--knn-weight", "1e-3", "--eval-batch-size", "64"]
    train(_cfg(ds, run, epochs=2), stop_after_epoch=1)  # the same run as finished_run, interrupted after epoch 1
    assert (run / "weights.1.pt").exists() and not (run / "weights.2.pt").exists()
    # a second, plain start on the same folder is refused
    assert main(base + sizes + ["--epochs", "2"]) == 2
    assert main(base + ["--resume"]) == 0
    keys = ("loss",) + ("render", "kl", "knn", "smoothness", "distance", "alignment", "repulsion")

    def steps(folder: Path) -> list[list[float]]:
        records = map(json.loads, (folder / "log.jsonl").read_text().splitlines())
        return [[r[k] for k in keys] for r in records if r["type"] == "step"]

    assert steps(finished_run) == steps(run)
    np.testing.assert_array_equal(np.load(finished_run / "z.2.npy"), np.load(run / "z.2.npy"))
    # extending a finished run (--resume --epochs N) at a constant rate is the longer run, step for step
    short, straight = tmp_path / "short", tmp_path / "straight"
    constant = ["--lr-schedule", "constant"]
    assert main(["train", str(ds), "-o", str(short)] + base[4:] + sizes + constant + ["--epochs", "1"]) == 0
    assert main(["train", str(ds), "-o", str(short)] + base[4:] + ["--resume", "--epochs", "2"]) == 0
    assert main(["train", str(ds), "-o", str(straight)] + base[4:] + sizes + constant + ["--epochs", "2"]) == 0
    assert steps(short) == steps(straight)


def test_finished_run_is_never_overwritten_silently(dataset, finished_run):
    from gaussianem.training.loop import train

    before = (finished_run / "weights.2.pt").stat().st_mtime_ns
    with pytest.raises(InputError, match="finished run"):
        train(_cfg(dataset[0], finished_run, epochs=2))
    # resuming a finished run does nothing
    train(_cfg(dataset[0], finished_run, epochs=2), resume=True)
    assert (finished_run / "weights.2.pt").stat().st_mtime_ns == before


def test_non_finite_loss_stops_with_the_batch(tmp_path):
    from gaussianem.training.loop import train
    from gaussianem.training.objective import NonFiniteLossError

    ds = tmp_path / "ds"
    make_dataset(ds, n=64, seed=1)
    with mrcfile.open(ds / "particles.mrcs", mode="r+") as m:
        m.data[37, 3, 4] = np.nan
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as info:
        train(_cfg(ds, run, epochs=1))
    assert 37 in info.value.indices.tolist()
    assert "step" in str(info.value) and "37" in str(info.value)
    assert not list(run.glob("weights.*.pt"))


def test_oom_message_names_the_settings():
    from gaussianem.training.loop import _oom_message

    msg = _oom_message(_cfg(Path("x"), Path("y")).replace(n_gaussians=6000, box_size=128))
    assert "--batch-size" in msg and "--projection-chunk" in msg and "--amp" in msg


def test_sampler_resumes_and_shards():
    from gaussianem.training.data import ResumableBatchSampler

    full = list(ResumableBatchSampler(50, 8, seed=3, epoch=2))
    assert len(full) == 7 and sorted(np.concatenate(full).tolist()) == list(range(50))  # last batch of 2 kept
    tail = list(ResumableBatchSampler(50, 8, seed=3, epoch=2, position=4))
    assert all((x == y).all() for x, y in zip(full[4:], tail, strict=True))
    other = list(ResumableBatchSampler(50, 8, seed=3, epoch=3))
    assert not (full[0] == other[0]).all()
    r0 = list(ResumableBatchSampler(50, 4, seed=3, epoch=2, rank=0, world_size=2))
    r1 = list(ResumableBatchSampler(50, 4, seed=3, epoch=2, rank=1, world_size=2))
    assert len(r0) == len(r1) == 6  # the last global batch (2 images for 2 ranks) is too small for BatchNorm
    for f, a, b in zip(full[:6], r0, r1, strict=True):
        assert sorted(np.concatenate([a, b]).tolist()) == sorted(f.tolist())
    assert math.isclose(len(list(ResumableBatchSampler(49, 8, seed=0))), 6)  # a last batch of 1 is dropped


def _ddp_worker(rank: int, world: int, store: str, ds: str, run: str, kw: dict, resume: bool) -> None:
    import torch.distributed as dist

    from gaussianem.training.loop import train

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        train(_cfg(Path(ds), Path(run), **kw), resume=resume, rank=rank, world_size=world)
    finally:
        dist.destroy_process_group()
    os._exit(0)  # the run is on disk: no interpreter teardown, where gloo processes abort now and then


def _spawn_ddp(tmp_path: Path, tag: str, ds: Path, run: Path, kw: dict, resume: bool = False) -> None:
    import torch.multiprocessing as mp

    store = tmp_path / f"store_{tag}"
    mp.spawn(_ddp_worker, args=(2, str(store), str(ds), str(run), kw, resume), nprocs=2, join=True)


def test_ddp_two_processes_match_single_process_and_resume(tmp_path):
    """gloo, 2 processes × batch 8 == 1 process × batch 16 (same global batches, noise, kNN draws and BatchNorm
    statistics); the DDP run is stopped after epoch 1 (extended to 2 on resume: a constant rate, so that the
    extension is the longer run) and resumed under DDP."""
    from gaussianem.training.loop import train

    ds = tmp_path / "ds"
    make_dataset(ds, n=64, seed=2)
    kw = dict(epochs=2, knn_start_epoch=1, lr_schedule="constant")
    single = tmp_path / "single"
    train(_cfg(ds, single, batch_size=16, **kw))
    ddp = tmp_path / "ddp"
    _spawn_ddp(tmp_path, "a", ds, ddp, {**kw, "batch_size": 8, "epochs": 1})
    assert (ddp / "weights.1.pt").is_file() and not (ddp / "weights.2.pt").exists()
    _spawn_ddp(tmp_path, "b", ds, ddp, {**kw, "batch_size": 8}, resume=True)
    keys = ("loss", "render", "kl", "knn", "distance")
    a = [r for r in map(json.loads, (single / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]
    b = [r for r in map(json.loads, (ddp / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]
    assert len(a) == len(b) == 8 and all(r["batch"] == 16 for r in b)
    for ra, rb in zip(a, b, strict=True):
        for k in keys:
            assert rb[k] == pytest.approx(ra[k], rel=1e-3, abs=1e-6), (ra["step"], k, ra[k], rb[k])
    za, zb = np.load(single / "z.2.npy"), np.load(ddp / "z.2.npy")
    assert za.shape == zb.shape == (64, 2)
    np.testing.assert_allclose(zb, za, rtol=1e-3, atol=1e-3)


def test_deferred_finiteness_check_skips_the_bad_step(tmp_path):
    """The GPU path (checked one step late, fused AdamW skips the non-finite step), run here on the CPU."""
    from gaussianem.gaussians import GaussianCloud
    from gaussianem.model import losses as L
    from gaussianem.model.vae import GaussianVAE
    from gaussianem.training.objective import (
        LossWeights,
        NonFiniteLossError,
        TrainingObjective,
        build_graphs,
        model_spec,
    )
    from gaussianem.training.step import Stepper

    cfg = TrainConfig(dataset="-", rundir="-", **{**SMALL, "box_size": BOX, "pixel_size_angstrom": APIX})
    pos, wid, amp = tiny_cloud()
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    torch.manual_seed(0)
    model = GaussianVAE(GaussianCloud(t(pos), t(wid), t(amp), 1.0, 2.0),
                        model_spec(cfg, GaussianCloud(t(pos), t(wid), t(amp), 1.0, 2.0), 1.0))
    model.set_base_trainable(False)
    objective = TrainingObjective(model, LossWeights.from_config(cfg), build_graphs(model, cfg, "cpu"), False,
                                  L.knn_counts(64))
    try:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=True)
    except (RuntimeError, ValueError) as exc:  # a torch without the fused CPU AdamW
        pytest.skip(f"fused AdamW unavailable on the CPU: {exc}")
    stepper = Stepper(objective, opt, None, 64, cfg.zdim, torch.device("cpu"), 0, 16, compile=False,
                      deferred_check=True)
    assert stepper.deferred
    gen = torch.Generator().manual_seed(3)

    def batch(i: int, bad: bool = False) -> dict:
        img = torch.randn(16, BOX, BOX, generator=gen)
        if bad:
            img[5, 3, 3] = float("nan")
        return {"index": torch.arange(16 * i, 16 * (i + 1)), "image": img,
                "rotation": random_rotations(16, gen, dtype=torch.float32), "shift": torch.zeros(16, 2)}

    assert stepper.step(batch(0), False) == []  # the first step's check is still pending
    done = stepper.step(batch(1), False)
    assert [r.step for r in done] == [1] and all(math.isfinite(v) for v in done[0].values)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stepper.step(batch(2, bad=True), False)  # step 3 is non-finite: the optimiser must skip it
    after = {k: v for k, v in model.state_dict().items() if v.is_floating_point() and "running" not in k}
    for k, v in after.items():  # the weights (not the batch-norm statistics of the bad batch) stay finite
        assert torch.isfinite(v).all(), k
    assert [k for k, v in after.items() if not torch.equal(v, before[k])] == []  # step 3 changed no weight
    with pytest.raises(NonFiniteLossError) as info:
        stepper.flush()
    assert info.value.step == 3 and 37 in info.value.indices.tolist()


def _graph_batches(sizes: list[int]) -> list[dict]:
    """Training batches of the given sizes (consecutive particle indices from 0) for the CUDA-graph tests."""
    gen = torch.Generator().manual_seed(5)
    out, start = [], 0
    for n in sizes:
        out.append({"index": torch.arange(start, start + n), "image": torch.randn(n, BOX, BOX, generator=gen),
                    "rotation": random_rotations(n, gen, dtype=torch.float32),
                    "shift": torch.randn(n, 2, generator=gen),
                    "ctf": torch.tensor([[1.2e4, 1.1e4, 30.0, 300.0, 2.7, 0.1, 0.0]]).repeat(n, 1)})
        start += n
    return out


def _graph_run(batches: list[dict], graphs: bool, whole: bool, recompile_free: set[int], **options):
    """Two epochs of ``batches`` on CUDA (batch size 16, an lr schedule, the kNN loss and the amplitude changes on
    in epoch 2) -> (Stepper, [total, *LOSS_TERMS] per step (n_steps, 1 + len(LOSS_TERMS)), weights, bank). Steps in
    ``recompile_free`` must not compile again."""
    from gaussianem.gaussians import GaussianCloud
    from gaussianem.model import losses as L
    from gaussianem.model.vae import GaussianVAE
    from gaussianem.training.objective import LossWeights, TrainingObjective, build_graphs, model_spec
    from gaussianem.training.schedule import kl_displacement_schedule
    from gaussianem.training.step import Stepper

    dev = torch.device("cuda")
    cfg = TrainConfig(dataset="-", rundir="-", **{**SMALL, "box_size": BOX, "pixel_size_angstrom": APIX,
                                                   "amp": False, **options})
    pos, wid, amp = tiny_cloud()
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    n_particles = sum(len(b["index"]) for b in batches)
    torch.manual_seed(0)
    cloud = GaussianCloud(t(pos), t(wid), t(amp), 1.0, 2.0)
    model = GaussianVAE(cloud, model_spec(cfg, cloud, 1.0)).to(dev)
    model.set_base_trainable(False)
    obj = TrainingObjective(model, LossWeights.from_config(cfg), build_graphs(model, cfg, dev), False,
                            L.knn_counts(n_particles)).to(dev)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1.0 + s))  # the graph must see each lr
    st = Stepper(obj, opt, sched, n_particles, cfg.zdim, dev, 0, 16, compile=graphs, cudagraphs=graphs,
                 amplitude_start_epoch=1, step_graph=whole, blur_start_angstrom=cfg.blur_start_angstrom,
                 blur_steps=round(cfg.blur_epochs * len(batches)),
                 kl_scale=None if cfg.kl_start_weight is None else lambda s: 0.25 + 0.25 * s,
                 kl_displacement=kl_displacement_schedule(cfg),
                 amplitude_ramp_steps=cfg.amplitude_ramp_steps,
                 open_split=(cfg.split_release_steps, model.decoder.open_split) if cfg.split_release_steps else None)
    assert st.cudagraphs == graphs and st.deferred and st.step_graph == whole
    out = []
    for i, b in enumerate(batches * 2):
        if i == len(batches):  # epoch 2: the kNN loss and the amplitude changes switch on
            out += st.flush()
            st.refresh_bank()
            st.epoch = 2
        with torch._dynamo.config.patch(error_on_recompile=i in recompile_free):
            out += st.step(b, knn_active=i >= len(batches))
    out += st.flush()
    return st, np.array([r.values for r in out]), model.state_dict(), st.bank.clone()


def _assert_same_training(a, b, loss_atol: float = 1e-5) -> None:
    """Two :func:`_graph_run` results: the same losses, weights after the AdamW updates, memory bank."""
    (_, va, wa, ba), (_, vb, wb, bb) = a, b
    assert va.shape == vb.shape == (va.shape[0], 1 + len(LOSS_TERMS))
    np.testing.assert_allclose(vb, va, rtol=2e-3, atol=loss_atol)
    for k, v in wa.items():
        if v.is_floating_point():
            torch.testing.assert_close(wb[k], v, rtol=2e-3, atol=1e-4, msg=k)
    torch.testing.assert_close(bb, ba, rtol=2e-3, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_steps_match_eager_steps():
    """The compiled, CUDA-graph-replayed step and the whole step captured as one CUDA graph compute the eager
    step's numbers (up to float order): losses, weights after the AdamW updates under an lr schedule, bank. The kNN
    loss and the amplitude changes switch on in epoch 2 with no second compilation."""
    batches = _graph_batches([16] * 4)
    eager = _graph_run(batches, False, False, set())
    graphed = _graph_run(batches, True, False, set(range(4, 8)))
    whole = _graph_run(batches, True, True, set(range(4, 8)))
    st = whole[0]  # steps 1-3 warm up, step 4 is captured, steps 5-8 replay the one graph
    assert st._graph is not None and not st._graph_failed, st.graph_traceback
    saved = st.state()["optimizer"]["param_groups"][0]  # a checkpoint holds plain settings
    assert isinstance(saved["lr"], float) and saved["capturable"] is False
    assert saved["lr"] == pytest.approx(1e-3 / 9)
    assert eager[1].shape == (8, 1 + len(LOSS_TERMS))
    assert np.all(graphed[1][4:, 3] > 0)  # the kNN loss was on in the last four steps
    np.testing.assert_allclose(graphed[1], eager[1], rtol=2e-3, atol=1e-5)
    _assert_same_training(eager, whole)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_whole_step_graph_with_a_displacement_kl_scale_from_a_later_step():
    """``--kl-displacement-scale 4 --kl-displacement-scale-start-steps 6`` under a latent split: the scale changes
    at step 6, after the capture (step 4), and the replayed graph follows it: the eager step's numbers, and other
    numbers than without the scale."""
    opts = dict(decoder="control", n_control_points=12, control_neighbours=4, readout_rank=4, displacement_dims=1,
                kl_weight=0.5)
    later = dict(opts, kl_displacement_scale=4.0, kl_displacement_scale_start_steps=6)
    batches = _graph_batches([16] * 4)
    eager = _graph_run(batches, False, False, set(), **later)
    whole = _graph_run(batches, True, True, set(range(4, 8)), **later)
    assert whole[0]._graph is not None and not whole[0]._graph_failed, whole[0].graph_traceback
    # The KL terms here (about 0.01-0.03) are sums of sigma^2 - log sigma^2 - 1 near 0, so float order moves them
    # more than the other losses: 8e-5 apart at one step on an H100 (session 28), over the default atol of 1e-5.
    _assert_same_training(eager, whole, loss_atol=2e-4)
    plain = _graph_run(batches, False, False, set(), **opts)
    np.testing.assert_allclose(plain[1][:6], eager[1][:6], rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain[1][6:, 0], eager[1][6:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("displacement_dims,release", [(0, 0), (1, 0), (1, 6)])
def test_whole_step_graph_with_control_decoder_and_splat(displacement_dims, release):
    """The control-point decoder (dense interpolation; also with a latent split, ``--displacement-dims 1``, and one
    opened at step 6, after the capture, with the control read-out vectors) and the splat projector (static
    binning, Triton kernels): the whole step is captured as one CUDA graph and replays the eager step's numbers;
    the splat's training equals the dense projector's (to its truncation and float order)."""
    from gaussianem.physics.splat import triton_available

    if not triton_available("cuda"):
        pytest.skip("needs Triton")
    fast = dict(decoder="control", n_control_points=12, control_neighbours=4, readout_rank=4, projector="splat",
                displacement_dims=displacement_dims, split_release_steps=release, readout_control=bool(release))
    batches = _graph_batches([16] * 4)
    eager = _graph_run(batches, False, False, set(), **fast)
    whole = _graph_run(batches, True, True, set(range(4, 8)), **fast)
    st = whole[0]
    assert st._graph is not None and not st._graph_failed, st.graph_traceback
    _assert_same_training(eager, whole)
    dense = _graph_run(batches, False, False, set(), **{**fast, "projector": "dense"})
    np.testing.assert_allclose(eager[1], dense[1], rtol=2e-3, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_whole_step_graph_with_a_centred_encoder_input():
    """--encoder-centre puts an FFT phase shift of every image into the step: it is captured in the one CUDA graph
    and replays the eager step's numbers."""
    batches = _graph_batches([16] * 4)
    eager = _graph_run(batches, False, False, set(), encoder_centre=True)
    whole = _graph_run(batches, True, True, set(range(4, 8)), encoder_centre=True)
    st = whole[0]
    assert st._graph is not None and not st._graph_failed, st.graph_traceback
    _assert_same_training(eager, whole)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_whole_step_graph_with_a_narrowing_residual_lowpass_and_a_kl_schedule():
    """--blur-start-angstrom, --kl-start-weight and --amplitude-ramp-steps: the low-pass's width (over six of the
    eight steps), the KL weight and (in epoch 2) the amplitude factor change every step; the one CUDA graph reads
    each step's values and replays the eager step's numbers."""
    batches = _graph_batches([16] * 4)
    options = {"blur_start_angstrom": 9.0, "blur_epochs": 1.5, "kl_start_weight": 0.0, "amplitude_ramp_steps": 8}
    eager = _graph_run(batches, False, False, set(), **options)
    whole = _graph_run(batches, True, True, set(range(4, 8)), **options)
    st = whole[0]
    assert st._graph is not None and not st._graph_failed, st.graph_traceback
    _assert_same_training(eager, whole)
    plain = _graph_run(batches, False, False, set())
    assert not np.allclose(plain[1][:6, 1], eager[1][:6, 1], rtol=1e-3)  # the render term differs while blurred


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_whole_step_graph_with_a_partial_last_batch():
    """Epochs that end on a short batch (as when the particle count is not a multiple of the batch size): the
    short batch runs outside the captured graph (compiled, on the same optimizer, schedule and bank) and the graph
    replays after it; the run equals the eager one."""
    batches = _graph_batches([16, 16, 16, 16, 8])
    eager = _graph_run(batches, False, False, set())
    whole = _graph_run(batches, True, True, {5, 6, 7, 8})
    st = whole[0]
    assert st._graph is not None and not st._graph_failed, st.graph_traceback
    assert st.state()["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 / 11)
    assert eager[1].shape == (10, 1 + len(LOSS_TERMS))
    _assert_same_training(eager, whole)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_two_epochs_on_cuda(dataset, tmp_path):
    from gaussianem.training.loop import train

    run = tmp_path / "cuda_run"
    train(_cfg(dataset[0], run, epochs=3, device="cuda"))
    ep = _epochs(run)
    assert [e["epoch"] for e in ep] == [1, 2, 3]
    assert ep[-1]["render"] < ep[0]["render"]
    assert np.load(run / "z.3.npy").shape == (192, SMALL["zdim"])
    assert np.isfinite(np.load(run / "z.3.npy")).all()


def test_run_records_the_consensus_map_frame(tmp_path):
    """preprocess records where the working grid sits in the user's map frame; train copies it; analysis uses it."""
    from gaussianem.analysis.volumes import working_grid
    from gaussianem.model.runfiles import read_config
    from gaussianem.training.loop import train

    ds = tmp_path / "ds"
    make_dataset(ds, n=48, seed=2)
    manifest = json.loads((ds / "dataset.json").read_text())
    manifest["working_origin_angstrom"] = [-24.0, 10.0, 3.5]
    write_json_atomic(ds / "dataset.json", manifest)
    run = tmp_path / "run"
    train(_cfg(ds, run, epochs=1, knn_weight=0.0))
    cfg = read_config(run)
    assert cfg["map_origin_angstrom"] == [-24.0, 10.0, 3.5]
    grid = working_grid(cfg)
    assert np.allclose(grid.centre_angstrom, [-24.0 + 16 * APIX, 10.0 + 16 * APIX, 3.5 + 16 * APIX])


def test_ctf_bfactor_reaches_the_training_batches(tmp_path):
    from gaussianem.io.dataset import load_dataset
    from gaussianem.physics.ctf import CTFParams
    from gaussianem.training.data import ParticleBatchDataset

    ds = tmp_path / "ds"
    make_dataset(ds, n=20, seed=4)
    ctf = dict(np.load(ds / "ctf.npz"))
    assert "bfactor" not in ctf
    assert ParticleBatchDataset(ds)[np.arange(4)]["ctf"].shape == (4, 7)
    ctf["bfactor"] = np.linspace(0, 190, 20)
    write_ctf(ds, ctf)
    batch = ParticleBatchDataset(ds, load_dataset(ds))[np.array([3, 19])]
    d = CTFParams.from_packed(batch["ctf"])._asdict()
    assert batch["ctf"].shape == (2, 8)
    assert np.allclose(d["bfactor"].numpy(), [30.0, 190.0])
    assert np.allclose(d["defocus_u_angstrom"].numpy(), ctf["defocus_u_angstrom"][[3, 19]])


def test_resident_particles_train_exactly_like_the_loader(dataset, finished_run, tmp_path):
    """--preload on (batches gathered from device memory) gives the loader's numbers (here both on the CPU)."""
    from gaussianem.training.loop import train

    run = tmp_path / "resident"
    train(_cfg(dataset[0], run, epochs=2, preload="on"))
    a, b = _epochs(finished_run), _epochs(run)
    for ra, rb in zip(a, b, strict=True):
        for k in ("loss", "render", "kl", "knn"):
            assert rb[k] == pytest.approx(ra[k], rel=1e-6, abs=1e-9), k
    np.testing.assert_allclose(np.load(run / "z.2.npy"), np.load(finished_run / "z.2.npy"), rtol=1e-5, atol=1e-6)


def test_sigkill_in_third_epoch_then_resume_matches_an_uninterrupted_run(dataset, tmp_path):
    """A `gaussianem train` process killed with SIGKILL in its third epoch resumes from its last complete
    checkpoint (epoch 2) and ends with the losses and latents of an uninterrupted run with the same seed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    ds, _ = dataset
    args = ["--device", "cpu", "--num-workers", "0", "--no-progress", "--encoder-hidden", "128",
            "--gaussian-hidden", "32", "--decoder-hidden", "32", "--decoder-features", "64", "--embedding-dim", "8",
            "--zdim", "2", "--batch-size", "8", "--lr", "1e-3", "--knn-start-epoch", "1", "--knn-weight", "1e-3",
            "--eval-batch-size", "64", "--epochs", "4", "--seed", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gaussianem", "train", str(ds)]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(cmd + ["-o", str(full)] + args, check=True, env=env, capture_output=True)
    proc = subprocess.Popen(cmd + ["-o", str(killed)] + args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log_path = killed / "log.jsonl"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if log_path.is_file() and '"epoch": 3' in log_path.read_text():
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (killed / "weights.2.pt").is_file() and not (killed / "weights.3.pt").exists()
    resumed = subprocess.run(cmd + ["-o", str(killed), "--resume", "--epochs", "4", "--num-workers", "0",
                                    "--device", "cpu", "--no-progress"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    keys = ("loss", "render", "kl", "knn")
    a = [[r[k] for k in keys] for r in map(json.loads, (full / "log.jsonl").read_text().splitlines())
         if r["type"] == "step"]
    b = [[r[k] for k in keys] for r in map(json.loads, (killed / "log.jsonl").read_text().splitlines())
         if r["type"] == "step"]
    assert b == a  # the killed epoch's partial records were dropped, the replayed ones are identical
    za, zb = np.load(full / "z.4.npy"), np.load(killed / "z.4.npy")
    for d in range(za.shape[1]):
        assert np.corrcoef(za[:, d], zb[:, d])[0, 1] >= 0.99
    np.testing.assert_array_equal(za, zb)


def test_amplitude_gate_and_penalty(dataset, tmp_path):
    """--amplitude-start-epoch 1: epoch 1 learns displacements only (decoded amplitudes equal the base, the
    amplitude head gets no gradient), epoch 2 switches amplitude changes on; --amplitude-weight logs mean Δa²."""
    from gaussianem.model.load import load_model
    from gaussianem.training.loop import train

    run = tmp_path / "gated"
    train(_cfg(dataset[0], run, epochs=2, amplitude_start_epoch=1, amplitude_weight=0.1, amplitude_gain_weight=0.1,
               knn_weight=0.0))
    ep = _epochs(run)
    assert ep[0]["amplitude"] == 0.0 and ep[1]["amplitude"] > 0.0
    assert ep[0]["amplitude_gain"] == 0.0 and 0.0 <= ep[1]["amplitude_gain"] <= ep[1]["amplitude"]
    w1 = load_state(run / "weights.1.pt")["model"]
    w2 = load_state(run / "weights.2.pt")["model"]
    head = "decoder.pair.head.weight" if "decoder.pair.head.weight" in w1 else "decoder.head.weight"  # control / pair
    assert torch.count_nonzero(w1[head][0]) == 0 and torch.count_nonzero(w1[head][1:4]) > 0
    assert torch.count_nonzero(w2[head][0]) > 0
    model, _, _ = load_model(run)
    z = torch.from_numpy(np.load(run / "z.2.npy")[:4])
    _, _, amp = model.decode(z)
    base = model.base_cloud.amplitudes.detach()
    assert not torch.allclose(amp, base.expand_as(amp))


def test_amplitude_start_steps_gates_the_first_optimizer_steps(dataset, tmp_path):
    """--amplitude-start-steps 5: the first five optimizer steps learn displacements only (the logged mean Δa² is
    exactly 0, the amplitude head gets no gradient), the later ones decode amplitude changes, within the first
    epoch; the setting is in the config."""
    from gaussianem.training.loop import train

    run = train(_cfg(dataset[0], tmp_path / "run", epochs=1, amplitude_start_steps=5, amplitude_weight=0.1,
                     knn_weight=0.0))
    steps = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]
    assert len(steps) > 6
    assert [r["step"] for r in steps[:5]] == [1, 2, 3, 4, 5]
    assert all(r["amplitude"] == 0.0 for r in steps[:5])
    # the amplitude head starts at zero: step 6 (the first with amplitudes on) still decodes Δa = 0, and its update
    # makes every later step's Δa non-zero
    assert steps[5]["amplitude"] == 0.0 and all(r["amplitude"] > 0.0 for r in steps[6:])
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text())["amplitude_start_steps"] == 5
    with pytest.raises(InputError, match="amplitude-start-steps"):
        _cfg(dataset[0], tmp_path / "bad", amplitude_start_steps=-1).validate()


def test_split_release_opens_the_latent_split_at_its_step_and_the_checkpoint_keeps_it(dataset, tmp_path):
    """--split-release-steps 6 with --displacement-dims 1: the split holds for six optimizer steps, then opens
    (the saved weights say so, and decode as the shared decoder of the same weights); released after the run's last
    step it stays closed; the setting is validated."""
    from gaussianem.model.load import load_model
    from gaussianem.training.loop import train

    kw = dict(epochs=1, decoder="control", n_control_points=12, control_neighbours=4, readout_rank=4,
              displacement_dims=1, knn_weight=0.0)
    opened = train(_cfg(dataset[0], tmp_path / "open", split_release_steps=6, **kw))
    closed = train(_cfg(dataset[0], tmp_path / "closed", split_release_steps=10_000, **kw))
    m_open, _, _ = load_model(opened, 1)
    m_closed, _, _ = load_model(closed, 1)
    assert float(m_open.decoder.split_open) == 1.0 and float(m_closed.decoder.split_open) == 0.0
    for bad in ({"split_release_steps": -1, "displacement_dims": 1},
                {"split_release_steps": 5, "displacement_dims": 0}):
        with pytest.raises(InputError, match="split-release-steps"):
            _cfg(dataset[0], tmp_path / "bad", **bad).validate()
    # a split run resumed with the release typed alone (the split is the saved run's): opens at its step
    from gaussianem.cli import main

    assert main(["train", str(dataset[0]), "-o", str(closed), "--resume", "--epochs", "2",
                 "--split-release-steps", "14"]) == 0
    assert float(load_model(closed, 2)[0].decoder.split_open) == 1.0
    with pytest.raises(InputError, match="split-release-steps"):  # a run without a split: refused when merged
        train(_cfg(dataset[0], opened.parent / "nosplit", epochs=1, split_release_steps=5), resume=False)


def test_tf32_switch_is_scoped_and_reaches_the_config():
    """`train --tf32` lands in the run's config (default off), and the switch is set only inside the run."""
    from gaussianem.cli import build_parser
    from gaussianem.commands.train import config_from_args
    from gaussianem.training.step import tf32_matmuls

    parser = build_parser()
    assert config_from_args(parser.parse_args(["train", "ds", "-o", "run"])).tf32 is False
    assert config_from_args(parser.parse_args(["train", "ds", "-o", "run", "--tf32"])).tf32 is True
    before = torch.backends.cuda.matmul.allow_tf32
    with tf32_matmuls(not before):
        assert torch.backends.cuda.matmul.allow_tf32 is (not before)
    assert torch.backends.cuda.matmul.allow_tf32 is before
    with pytest.raises(KeyError), tf32_matmuls(not before):
        raise KeyError("a failing run")
    assert torch.backends.cuda.matmul.allow_tf32 is before


def test_step_graph_is_the_default_only_where_it_can_run():
    """The whole-step CUDA graph is on by default with CUDA graphs (one process, fused AdamW), never on the CPU."""
    from gaussianem.training.step import Stepper

    model = torch.nn.Linear(2, 2)
    model.knn_counts = (8, 2, 2)
    opt = torch.optim.AdamW(model.parameters())
    st = Stepper(model, opt, None, 10, 2, torch.device("cpu"), 0, 4, step_graph=None)
    assert not st.cudagraphs and not st.step_graph
    st = Stepper(model, opt, None, 10, 2, torch.device("cpu"), 0, 4, compile=False, step_graph=True)
    assert not st.step_graph  # asked for, but there is no CUDA graph to put the step in
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        model = model.to(dev)
        fused = torch.optim.AdamW(model.parameters(), fused=True)
        assert Stepper(model, fused, None, 10, 2, dev, 0, 4).step_graph
        assert not Stepper(model, fused, None, 10, 2, dev, 0, 4, step_graph=False).step_graph
        assert not Stepper(model, torch.optim.AdamW(model.parameters()), None, 10, 2, dev, 0, 4).step_graph


def test_blur_schedule_and_a_blurred_run(dataset, tmp_path):
    """--blur-start-angstrom S --blur-epochs E: the residual low-pass's width is S at the first step, falls
    linearly and is 0 from step E × steps-per-epoch on; a run with it trains and records it, and its first render
    term (the same weights as the plain run's) differs from the plain run's."""
    from gaussianem.training.loop import train
    from gaussianem.training.step import blur_sigma

    assert blur_sigma(0, 8.0, 10) == 8.0 and blur_sigma(5, 8.0, 10) == 4.0
    assert blur_sigma(10, 8.0, 10) == 0.0 and blur_sigma(50, 8.0, 10) == 0.0 and blur_sigma(0, 8.0, 0) == 0.0
    plain = train(_cfg(dataset[0], tmp_path / "plain", epochs=1, knn_weight=0.0))
    blurred = train(_cfg(dataset[0], tmp_path / "blur", epochs=1, knn_weight=0.0, blur_start_angstrom=12.0,
                         blur_epochs=0.25))
    steps = lambda run: [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())  # noqa: E731
                         if r["type"] == "step"]
    a, b = steps(plain), steps(blurred)
    assert len(a) == len(b) >= 8
    assert a[0]["render"] != pytest.approx(b[0]["render"], rel=1e-3)  # the same weights, a different term
    import yaml

    saved = yaml.safe_load((blurred / "config.yaml").read_text())
    assert saved["blur_start_angstrom"] == 12.0 and saved["blur_epochs"] == 0.25
    with pytest.raises(InputError, match="blur"):
        _cfg(dataset[0], tmp_path / "bad", blur_start_angstrom=-1.0).validate()
    with pytest.raises(InputError, match="blur"):
        _cfg(dataset[0], tmp_path / "bad", blur_start_angstrom=4.0, blur_epochs=0).validate()


def test_lr_schedules():
    """--lr-schedule: constant stays 1; cosine falls from 1 through 0.5 at half-way to 0; wsd stays 1 for the first
    1 - f of the run, then falls as a half cosine to 0 (0.5 half-way through the decay); the command line reads
    both settings."""
    from gaussianem.cli import build_parser
    from gaussianem.commands.train import config_from_args
    from gaussianem.training.schedule import lr_factor

    assert [lr_factor(s, 100, "constant") for s in (0, 50, 100)] == [1.0, 1.0, 1.0]
    assert lr_factor(0, 100, "cosine") == 1.0 and lr_factor(50, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(75, 100, "wsd", 0.25) == 1.0 and lr_factor(60, 100, "wsd", 0.2) == 1.0
    assert lr_factor(87.5, 100, "wsd", 0.25) == pytest.approx(0.5)
    assert lr_factor(100, 100, "wsd", 0.25) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(150, 100, "wsd", 0.25) == pytest.approx(0.0, abs=1e-12)  # past the end: stays at 0
    cfg = config_from_args(build_parser().parse_args(["train", "ds", "-o", "run", "--lr-schedule", "wsd",
                                                      "--lr-decay-fraction", "0.3"]))
    assert cfg.lr_schedule == "wsd" and cfg.lr_decay_fraction == 0.3
    with pytest.raises(InputError, match="lr-decay-fraction"):
        cfg.replace(lr_decay_fraction=0.0).validate()


def test_kl_schedule_holds_the_start_weight_then_rises_to_the_kl_weight(dataset, tmp_path):
    """--kl-start-weight W0 --kl-ramp-start r: the KL weight is W0 for the first r of the run, then linear to
    --kl-weight at its end; in a run, each step's logged total is its logged terms weighted with that step's KL
    weight (the logged KL itself is the plain one)."""
    from gaussianem.training.objective import LossWeights
    from gaussianem.training.schedule import kl_weight_at

    assert kl_weight_at(0, 100, 2e-5, 4e-6, 0.5) == 4e-6 and kl_weight_at(50, 100, 2e-5, 4e-6, 0.5) == 4e-6
    assert kl_weight_at(75, 100, 2e-5, 4e-6, 0.5) == pytest.approx(1.2e-5)
    assert kl_weight_at(100, 100, 2e-5, 4e-6, 0.5) == pytest.approx(2e-5)
    assert kl_weight_at(500, 100, 2e-5, 4e-6, 0.5) == pytest.approx(2e-5)
    cfg = _cfg(dataset[0], tmp_path / "run", epochs=2, knn_weight=0.0, kl_weight=0.5, kl_start_weight=0.0,
               kl_ramp_start=0.5)
    from gaussianem.training.loop import train

    run = train(cfg)
    steps = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]
    weights = LossWeights.from_config(cfg).as_tensor("cpu").tolist()
    total = len(steps)
    for r in steps:
        w_kl = kl_weight_at(r["step"] - 1, total, 0.5, 0.0, 0.5)
        expected = sum(w * r[t] for w, t in zip(weights, LOSS_TERMS, strict=True)) + (w_kl - 0.5) * r["kl"]
        assert r["loss"] == pytest.approx(expected, rel=1e-4, abs=1e-6), r["step"]
    assert min(r["kl"] for r in steps) > 0  # so the check above tells the scheduled weight from the plain one
    with pytest.raises(InputError, match="kl-start-weight"):
        cfg.replace(kl_ramp_start=1.0).validate()
    with pytest.raises(InputError, match="kl-start-weight"):
        cfg.replace(kl_weight=0.0).validate()


def test_kl_warmup_ramps_the_kl_weight_from_zero(dataset, tmp_path):
    """--kl-warmup-steps N: the KL weight's factor is step / N up to step N, then 1, and multiplies
    --kl-start-weight's schedule; in a run each step's logged total carries the KL at that ramped weight."""
    from gaussianem.training.loop import train
    from gaussianem.training.objective import LossWeights
    from gaussianem.training.schedule import kl_schedule, kl_weight_at

    cfg = _cfg(dataset[0], tmp_path / "run", epochs=2, knn_weight=0.0, kl_weight=0.5, kl_warmup_steps=4)
    assert kl_schedule(cfg.replace(kl_warmup_steps=0), 100) is None
    f = kl_schedule(cfg, 100)
    assert [f(s) for s in (0, 1, 2, 4, 50)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    g = kl_schedule(cfg.replace(kl_start_weight=0.1, kl_ramp_start=0.5), 100)
    assert g(2) == pytest.approx(0.5 * 0.1 / 0.5) and g(100) == pytest.approx(1.0)
    assert g(75) == pytest.approx(kl_weight_at(75, 100, 0.5, 0.1, 0.5) / 0.5)
    run = train(cfg)
    steps = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]
    weights = LossWeights.from_config(cfg).as_tensor("cpu").tolist()
    assert len(steps) > 4
    for r in steps:
        w_kl = 0.5 * min(1.0, (r["step"] - 1) / 4)
        expected = sum(w * r[t] for w, t in zip(weights, LOSS_TERMS, strict=True)) + (w_kl - 0.5) * r["kl"]
        assert r["loss"] == pytest.approx(expected, rel=1e-4, abs=1e-6), r["step"]
    assert min(r["kl"] for r in steps) > 0
    with pytest.raises(InputError, match="kl-warmup-steps"):
        cfg.replace(kl_warmup_steps=-1).validate()


def test_amplitude_ramp_brings_the_amplitude_changes_in_gradually(dataset, tmp_path):
    """--amplitude-start-steps 3 --amplitude-ramp-steps 4: the factor on the decoded amplitude changes is 0 for
    the first three steps, then 1/4, 2/4, 3/4 and 1; in a run the logged mean Δa² is 0 before the start and grows
    once the ramp has begun (the head starts at zero, so the first step with amplitudes on still decodes none)."""
    from gaussianem.training.loop import train
    from gaussianem.training.step import amplitude_factor

    assert [amplitude_factor(s, 3, 4) for s in range(9)] == [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    assert amplitude_factor(5, 3, 0) == 1.0 and amplitude_factor(2, 3, 0) == 0.0
    run = train(_cfg(dataset[0], tmp_path / "run", epochs=1, amplitude_start_steps=3, amplitude_ramp_steps=4,
                     amplitude_weight=0.1, knn_weight=0.0))
    steps = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]
    assert all(r["amplitude"] == 0.0 for r in steps[:4]) and all(r["amplitude"] > 0.0 for r in steps[4:])
    with pytest.raises(InputError, match="amplitude-ramp-steps"):
        _cfg(dataset[0], tmp_path / "bad", amplitude_ramp_steps=-1).validate()


def test_latent_split_settings_resolve_from_the_decoder_zdim_and_run_length():
    """Unset (None), the latent split is on where the control-point decoder runs with an amplitude read-out and
    zdim >= 6: 3 displacement dimensions, the control read-out vectors, the centred encoder input, one image
    encoder, amplitudes after two epochs (at most half the run), the split opened at 1.5 × that, the KL warm-up up to
    the amplitude start; with a typed --encoder-split, amplitudes from the start, the warm-up over the two epochs and
    the opening at 1.5 × them; off (0, False, False, False, 0, 0, warm-up 0) with the pair decoder, a small zdim or
    no read-out; what is typed is kept; a typed release without a split is refused."""
    from gaussianem.training.config import resolve_auto

    base = TrainConfig(dataset="d", rundir="r", zdim=10, n_control_points=100, epochs=20)
    on = resolve_auto(base, n_gaussians=500, steps_per_epoch=625)
    assert (on.displacement_dims, on.readout_control, on.encoder_centre, on.encoder_split) == (3, True, True, False)
    assert (on.amplitude_start_steps, on.split_release_steps) == (1250, 1875)  # session 17's GPU runs' o3zc
    assert on.kl_warmup_steps == 1250  # session 19's kw
    two = resolve_auto(base.replace(encoder_split=True), n_gaussians=500, steps_per_epoch=625)
    assert (two.amplitude_start_steps, two.split_release_steps, two.kl_warmup_steps) == (0, 1875, 1250)  # es
    short = resolve_auto(base.replace(epochs=3), n_gaussians=500, steps_per_epoch=100)
    assert (short.amplitude_start_steps, short.split_release_steps, short.kl_warmup_steps) == (150, 225, 150)
    short = resolve_auto(base.replace(epochs=3, encoder_split=True), n_gaussians=500, steps_per_epoch=100)
    assert (short.amplitude_start_steps, short.split_release_steps, short.kl_warmup_steps) == (0, 225, 150)
    for off in (resolve_auto(base, n_gaussians=50, steps_per_epoch=625),  # auto -> pair decoder
                resolve_auto(base.replace(zdim=5), n_gaussians=500, steps_per_epoch=625),
                resolve_auto(base.replace(readout_rank=0), n_gaussians=500, steps_per_epoch=625),
                resolve_auto(base.replace(displacement_dims=0), n_gaussians=500, steps_per_epoch=625),
                resolve_auto(base.replace(displacement_dims=0, amplitude_start_steps=9), n_gaussians=500,
                             steps_per_epoch=625).replace(amplitude_start_steps=0)):
        assert (off.displacement_dims, off.readout_control, off.encoder_centre, off.encoder_split,
                off.amplitude_start_steps, off.split_release_steps, off.kl_warmup_steps) == (0, False, False, False,
                                                                                             0, 0, 0)
    typed = resolve_auto(base.replace(displacement_dims=4, encoder_centre=False, encoder_split=False,
                                      amplitude_start_steps=7), n_gaussians=500, steps_per_epoch=625)
    assert (typed.displacement_dims, typed.readout_control, typed.encoder_centre, typed.amplitude_start_steps,
            typed.split_release_steps, typed.kl_warmup_steps) == (4, True, False, 7, 10, 7)
    typed = resolve_auto(base.replace(amplitude_start_steps=7, encoder_split=True), n_gaussians=500,
                         steps_per_epoch=625)
    assert (typed.amplitude_start_steps, typed.split_release_steps, typed.kl_warmup_steps) == (7, 1875, 1250)
    assert resolve_auto(base.replace(kl_warmup_steps=0), n_gaussians=500, steps_per_epoch=625).kl_warmup_steps == 0
    assert resolve_auto(base.replace(displacement_dims=0, kl_warmup_steps=40), n_gaussians=500,
                        steps_per_epoch=625).kl_warmup_steps == 40
    assert resolve_auto(on, n_gaussians=500, steps_per_epoch=1) == on  # concrete settings stay as they are
    with pytest.raises(InputError, match="split-release-steps"):
        resolve_auto(base.replace(split_release_steps=5), n_gaussians=50, steps_per_epoch=625)
    from gaussianem.model.spec import ModelSpec  # a spec made directly resolves the same way

    geometry = dict(box_size=16, pixel_size_angstrom=2.0, width_min=1.0, width_max=4.0, zdim=10, n_control_points=100)
    assert ModelSpec(n_gaussians=500, **geometry).displacement_dims == 3
    assert ModelSpec(n_gaussians=500, **geometry).encoder_split is False
    made = ModelSpec(n_gaussians=500, encoder_split=True, **geometry).to_dict()
    assert made["encoder_split"] is True
    made.pop("encoder_split")  # a checkpoint made before the field: one image encoder
    assert ModelSpec.from_dict(made).encoder_split is False
    assert (ModelSpec(n_gaussians=50, **geometry).displacement_dims, ModelSpec(n_gaussians=50, **geometry)
            .encoder_centre) == (0, False)


def test_new_run_records_the_resolved_split_and_load_keeps_the_loaded_models(dataset, tmp_path):
    """A run with the control decoder and zdim 6 writes the split's concrete settings into config.yaml and its
    weights (12 steps per epoch: amplitudes from step 24, the split opened at 36, so open after 4 epochs; with
    --encoder-split two image encoders and amplitudes from the start); --load
    of a run trained without a split makes a model without one (its weights fit); a typed --readout-control adds
    weights the loaded run lacks: refused."""
    from gaussianem.model.load import load_model
    from gaussianem.model.runfiles import read_config
    from gaussianem.training.loop import train

    kw = dict(decoder="control", n_control_points=12, control_neighbours=4, readout_rank=4, zdim=6,
              knn_weight=0.0)
    run = train(_cfg(dataset[0], tmp_path / "split", epochs=4, **kw))
    saved = read_config(run)
    assert (saved["displacement_dims"], saved["readout_control"], saved["encoder_centre"], saved["encoder_split"],
            saved["amplitude_start_steps"], saved["split_release_steps"]) == (3, True, True, False, 24, 36)
    model, _, _ = load_model(run, 4)
    assert model.spec.displacement_dims == 3 and model.spec.encoder_centre is True
    assert float(model.decoder.split_open) == 1.0 and model.image_encoder.split_dims == 0
    two = train(_cfg(dataset[0], tmp_path / "two", epochs=4, encoder_split=True, amplitude_encoder_hidden=8, **kw))
    assert (read_config(two)["amplitude_start_steps"], read_config(two)["split_release_steps"]) == (0, 36)
    model, _, _ = load_model(two, 4)
    assert model.image_encoder.split_dims == 3
    assert model.image_encoder.amplitude_body[0].out_features == 8
    # --load takes the loaded model's narrow amplitude encoder with its split, so its weights fit
    again = train(_cfg(dataset[0], tmp_path / "again", epochs=1, load=str(two), **kw))
    assert load_model(again, 1)[0].image_encoder.amplitude_body[0].out_features == 8
    assert float(model.decoder.split_open) == 1.0
    plain = train(_cfg(dataset[0], tmp_path / "plain", epochs=1, displacement_dims=0, **{
        k: v for k, v in kw.items() if k != "displacement_dims"}))
    loaded = train(_cfg(dataset[0], tmp_path / "loaded", epochs=1, load=str(plain), **kw))
    assert (read_config(loaded)["displacement_dims"], read_config(loaded)["encoder_centre"],
            read_config(loaded)["encoder_split"]) == (0, False, False)
    with pytest.raises(InputError, match="do not fit"):
        train(_cfg(dataset[0], tmp_path / "typed", epochs=1, load=str(plain), **{**kw, "readout_control": True}))
    with pytest.raises(InputError, match="encoder-split"):  # two encoders need the split's two parts of z
        train(_cfg(dataset[0], tmp_path / "nosplit", epochs=1, **{**kw, "displacement_dims": 0,
                                                                 "encoder_split": True}))
    assert not (tmp_path / "nosplit" / "config.yaml").exists()
    with pytest.raises(InputError, match="needs --encoder-split"):  # a width for an encoder that is not there
        train(_cfg(dataset[0], tmp_path / "nowidth", epochs=1, **{**kw, "amplitude_encoder_hidden": 8}))
    with pytest.raises(InputError, match="needs --encoder-split"):  # a freeze of an encoder that is not there
        train(_cfg(dataset[0], tmp_path / "nofreeze", epochs=1, **{**kw, "amplitude_encoder_freeze_steps": 5}))
    assert not (tmp_path / "nofreeze" / "config.yaml").exists()
    assert not (tmp_path / "nowidth" / "config.yaml").exists()


def test_a_saved_configuration_that_predates_the_automatic_settings_resumes_as_it_ran():
    """config.yaml of a run made before the split's schedule and the KL warm-up were automatic (and before the wsd
    learning rate was the default) lacks those keys: they read as that run's values (0: no displacement-only phase,
    no warm-up; a constant rate), not as 'automatic' or today's default; a saved value is kept."""
    new = TrainConfig(dataset="d", rundir="r")
    assert new.lr_schedule == "wsd"
    old = new.to_dict()
    for key in ("amplitude_start_steps", "split_release_steps", "kl_warmup_steps", "lr_schedule"):
        old.pop(key)
    cfg = TrainConfig.from_dict(old)
    assert (cfg.amplitude_start_steps, cfg.split_release_steps, cfg.kl_warmup_steps) == (0, 0, 0)
    assert cfg.lr_schedule == "constant"
    assert TrainConfig.from_dict({**old, "kl_warmup_steps": 1250}).kl_warmup_steps == 1250
    assert TrainConfig.from_dict({**old, "lr_schedule": "wsd"}).lr_schedule == "wsd"


def test_readout_lr_scale_puts_the_amplitude_read_out_in_its_own_optimizer_group():
    """``--readout-lr-scale``: the read-out's parameters (u, the control points' vectors, h(z)) form a second AdamW
    group at lr × scale, every other trainable parameter stays in the first at lr; at 1 (the default) one group, as
    before (so checkpoints of earlier runs resume); a model without a read-out has one group whatever the scale."""
    from gaussianem.training.schedule import param_groups

    torch.manual_seed(0)
    from gaussianem.gaussians import GaussianCloud
    from gaussianem.model.vae import GaussianVAE, ModelSpec

    g = 150
    cloud = GaussianCloud(torch.randn(g, 3) * 8, torch.full((g,), 1.5), 1 + torch.rand(g), 1.0, 2.0)
    spec = ModelSpec(box_size=16, pixel_size_angstrom=2.0, n_gaussians=g, width_min=1.0, width_max=2.0, zdim=6,
                     encoder_hidden=32, gaussian_hidden=16, embedding_dim=8, decoder_hidden=16, decoder_features=24,
                     decoder="control", n_control_points=20, control_neighbours=4, readout_rank=5)
    model = GaussianVAE(cloud, spec)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    one = param_groups(model, 1e-4, 1.0)
    assert len(one) == 1 and {id(p) for p in one[0]["params"]} == trainable
    rest, readout = param_groups(model, 1e-4, 10.0)
    names = {id(p): n for n, p in model.named_parameters()}
    assert readout["lr"] == pytest.approx(1e-3) and "lr" not in rest
    assert {names[id(p)] for p in readout["params"]} == {
        "decoder.readout_vectors", "decoder.readout_control", "decoder.readout_net.0.weight",
        "decoder.readout_net.0.bias", "decoder.readout_net.2.weight", "decoder.readout_net.2.bias"}
    assert {id(p) for p in rest["params"] + readout["params"]} == trainable
    pair = GaussianVAE(cloud, ModelSpec(**{**spec.to_dict(), "decoder": "pair", "displacement_dims": 0,
                                           "readout_control": False, "encoder_split": False}))
    assert len(param_groups(pair, 1e-4, 10.0)) == 1


def test_amplitude_encoder_freeze_stops_the_amplitude_encoder_alone_after_its_steps(dataset, tmp_path):
    """``--amplitude-encoder-freeze-steps N`` with --encoder-split: the amplitude part's image encoder is an AdamW
    group of its own whose learning rate is the run's until step N and 0 from it on (its factor per step), and in a
    run (12 steps per epoch, N = 12) its weights after epochs 1, 2 and 3 are the same while the displacement part's
    encoder keeps learning; without the option, one group as before."""
    from gaussianem.training.loop import train
    from gaussianem.training.schedule import group_lr_factors, param_groups

    kw = dict(decoder="control", n_control_points=12, control_neighbours=4, readout_rank=4, zdim=6,
              knn_weight=0.0, encoder_split=True, amplitude_encoder_hidden=8, lr_schedule="constant")
    run = train(_cfg(dataset[0], tmp_path / "freeze", epochs=3, amplitude_encoder_freeze_steps=12, **kw))
    weights = [load_state(run / f"weights.{e}.pt")["model"] for e in (1, 2, 3)]
    amp = [k for k in weights[0] if k.startswith("image_encoder.amplitude_") and k.endswith("weight")]
    disp = [k for k in weights[0] if k.startswith("image_encoder.body.") and k.endswith("weight")]
    assert amp and disp
    for k in amp:
        assert torch.equal(weights[0][k], weights[1][k]) and torch.equal(weights[0][k], weights[2][k])
    assert any(not torch.equal(weights[0][k], weights[2][k]) for k in disp)
    from gaussianem.model.load import load_model

    model, _, _ = load_model(run, 3)
    groups = param_groups(model, 1e-4, 1.0, 12)
    names = {id(p): n for n, p in model.named_parameters()}
    assert len(groups) == 2 and groups[1]["freeze_after"] == 12
    assert all(names[id(p)].startswith("image_encoder.amplitude_") for p in groups[1]["params"])
    assert not any(names[id(p)].startswith("image_encoder.amplitude_") for p in groups[0]["params"])
    factors = group_lr_factors(groups, lambda s: 0.5)
    assert [f(11) for f in factors] == [0.5, 0.5] and [f(12) for f in factors] == [0.5, 0.0]
    assert len(param_groups(model, 1e-4, 1.0)) == 1


def test_amplitude_encoder_thaw_restarts_the_frozen_encoder_at_its_step(dataset, tmp_path):
    """``--amplitude-encoder-thaw-steps T`` after a freeze at N: the group's factor is the run's before N, 0 from N
    until T and the run's again from T; in a run (12 steps per epoch, N = 12, T = 24) the amplitude part's encoder
    is the same after epochs 1 and 2 and has moved after epoch 3; a thaw without a freeze before it is refused."""
    from gaussianem.training.loop import train
    from gaussianem.training.schedule import group_lr_factors

    kw = dict(decoder="control", n_control_points=12, control_neighbours=4, readout_rank=4, zdim=6,
              knn_weight=0.0, encoder_split=True, amplitude_encoder_hidden=8, lr_schedule="constant")
    factors = group_lr_factors([{"params": []}, {"params": [], "freeze_after": 12, "thaw_at": 24}], lambda s: 0.5)
    assert [factors[1](s) for s in (11, 12, 23, 24, 30)] == [0.5, 0.0, 0.0, 0.5, 0.5]
    assert [factors[0](s) for s in (11, 12, 24)] == [0.5, 0.5, 0.5]
    run = train(_cfg(dataset[0], tmp_path / "thaw", epochs=3, amplitude_encoder_freeze_steps=12,
                     amplitude_encoder_thaw_steps=24, **kw))
    weights = [load_state(run / f"weights.{e}.pt")["model"] for e in (1, 2, 3)]
    amp = [k for k in weights[0] if k.startswith("image_encoder.amplitude_") and k.endswith("weight")]
    assert amp and all(torch.equal(weights[0][k], weights[1][k]) for k in amp)
    assert any(not torch.equal(weights[1][k], weights[2][k]) for k in amp)
    for freeze, thaw in ((0, 24), (24, 24), (30, 24)):
        with pytest.raises(InputError, match="thaw"):
            train(_cfg(dataset[0], tmp_path / f"bad{freeze}", epochs=1, amplitude_encoder_freeze_steps=freeze,
                       amplitude_encoder_thaw_steps=thaw, **kw))
        assert not (tmp_path / f"bad{freeze}").exists()


def test_kl_displacement_scale_start_steps_applies_the_scale_from_its_step(dataset, tmp_path):
    """``--kl-displacement-scale S --kl-displacement-scale-start-steps N``: the displacement dimensions' KL scale is
    1 for steps before N and S from step N on; in a run (12 steps per epoch, N = 12) the weights after epoch 1 are
    those of a run without S, and after epoch 2 they differ; a start with S = 1 or below 0 is refused."""
    from gaussianem.training.loop import train
    from gaussianem.training.schedule import kl_displacement_schedule

    sched = kl_displacement_schedule(TrainConfig(dataset="-", rundir="-", kl_displacement_scale=4.0,
                                                 kl_displacement_scale_start_steps=12))
    assert [sched(s) for s in (0, 11, 12, 40)] == [1.0, 1.0, 4.0, 4.0]
    assert kl_displacement_schedule(TrainConfig(dataset="-", rundir="-", kl_displacement_scale=4.0)) is None
    for bad, match in (({"kl_displacement_scale_start_steps": -1}, "must be >= 0"),
                       ({"kl_displacement_scale_start_steps": 5}, "give it a scale other than 1")):
        with pytest.raises(InputError, match=match):
            TrainConfig(dataset="-", rundir="-", **bad).validate()
    kw = dict(decoder="control", n_control_points=12, control_neighbours=4, readout_rank=4, zdim=6,
              knn_weight=0.0, displacement_dims=2, kl_weight=0.5, lr_schedule="constant")
    plain = train(_cfg(dataset[0], tmp_path / "plain", epochs=2, **kw))
    later = train(_cfg(dataset[0], tmp_path / "later", epochs=2, kl_displacement_scale=4.0,
                       kl_displacement_scale_start_steps=12, **kw))
    w = {(run, e): load_state(run / f"weights.{e}.pt")["model"] for run in (plain, later) for e in (1, 2)}
    assert all(torch.equal(w[plain, 1][k], w[later, 1][k]) for k in w[plain, 1])
    assert any(not torch.equal(w[plain, 2][k], w[later, 2][k]) for k in w[plain, 2])


def test_kl_amplitude_is_the_split_amplitude_dimensions_share_of_the_kl(dataset, tmp_path):
    """Each step and epoch record logs ``kl_amplitude``, the KL term over the latent split's amplitude dimensions
    (zdim - N): with a split, 0 < it < the whole KL (a sum over dimensions, so the parts add up to it); without a
    split it is 0; and it has no weight in the loss."""
    import json

    from gaussianem.model import losses as L
    from gaussianem.training.loop import train
    from gaussianem.training.objective import LossWeights

    kw = dict(decoder="control", n_control_points=12, control_neighbours=4, readout_rank=4, zdim=6, knn_weight=0.0)
    split = train(_cfg(dataset[0], tmp_path / "split", epochs=1, displacement_dims=2, **kw))
    flat = train(_cfg(dataset[0], tmp_path / "flat", epochs=1, displacement_dims=0, **kw))
    for run, on in ((split, True), (flat, False)):
        records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        rows = [r for r in records if r.get("type") in ("step", "epoch")]
        assert rows and all("kl_amplitude" in r for r in rows)
        for r in rows:
            assert (0.0 < r["kl_amplitude"] < r["kl"]) if on else r["kl_amplitude"] == 0.0
    assert LossWeights(1.0, 1.0, 1.0, 1.0, 1.0, 1.0).as_tensor("cpu")[LOSS_TERMS.index("kl_amplitude")] == 0.0
    mu, logvar = torch.randn(5, 6), torch.randn(5, 6)
    total = L.kl_divergence(mu, logvar)
    assert torch.allclose(L.kl_divergence(mu[:, :2], logvar[:, :2]) + L.kl_divergence(mu[:, 2:], logvar[:, 2:]), total)


def test_kl_displacement_scale_weighs_the_split_displacement_dimensions_kl():
    """``--kl-displacement-scale s``: the total loss holds the KL as kl_amplitude + s · (kl - kl_amplitude), times the
    KL schedule's factor; the logged terms stay the plain ones; s = 1 leaves the loss as it was. Without a latent
    split the setting is refused."""
    from gaussianem.gaussians import GaussianCloud
    from gaussianem.model import losses as L
    from gaussianem.model.vae import GaussianVAE
    from gaussianem.training.config import resolve_auto
    from gaussianem.training.objective import LossWeights, TrainingObjective, build_graphs, model_spec

    pos, wid, amp = tiny_cloud()
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    cloud = GaussianCloud(t(pos), t(wid), t(amp), 1.0, 2.0)
    kw = {**SMALL, "box_size": BOX, "pixel_size_angstrom": APIX, "decoder": "control", "n_control_points": 12,
          "control_neighbours": 4, "readout_rank": 4, "zdim": 6, "displacement_dims": 2, "kl_weight": 0.5}
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(8, BOX, BOX, generator=gen)
    rot = random_rotations(8, gen, dtype=torch.float32)
    args = (images, rot, torch.zeros(8, 2), None, torch.randn(8, 6, generator=gen))
    out = {}
    for s in (1.0, 3.0):
        cfg = TrainConfig(dataset="-", rundir="-", **kw, kl_displacement_scale=s)
        torch.manual_seed(0)
        model = GaussianVAE(cloud, model_spec(cfg, cloud, 1.0)).eval()
        obj = TrainingObjective(model, LossWeights.from_config(cfg), build_graphs(model, cfg, "cpu"), False,
                                L.knn_counts(64))
        with torch.no_grad():
            out[s] = [obj(*args), obj(*args, kl_scale=torch.tensor(0.25)),
                      obj(*args, kl_displacement=torch.tensor(3.0)), obj(*args, kl_displacement=torch.tensor(1.0))]
    kl, kl_amp = (out[1.0][0][1][LOSS_TERMS.index(k)] for k in ("kl", "kl_amplitude"))
    assert 0 < kl_amp < kl
    for i, factor in enumerate((1.0, 0.25)):
        torch.testing.assert_close(out[3.0][i][1], out[1.0][i][1])  # the logged terms: the same
        torch.testing.assert_close(out[3.0][i][0] - out[1.0][i][0], 0.5 * factor * 2.0 * (kl - kl_amp))
    torch.testing.assert_close(out[1.0][0][0] - out[1.0][1][0], 0.5 * 0.75 * kl)  # s = 1: the schedule as before
    # a scale given per step (--kl-displacement-scale-start-steps) replaces the configured one
    torch.testing.assert_close(out[1.0][2][0], out[3.0][0][0])
    torch.testing.assert_close(out[3.0][3][0], out[1.0][0][0])
    with pytest.raises(InputError, match="--kl-displacement-scale must be"):
        TrainConfig(dataset="-", rundir="-", kl_displacement_scale=float("nan")).validate()
    with pytest.raises(InputError, match="--kl-displacement-scale weighs"):
        TrainConfig(dataset="-", rundir="-", displacement_dims=0, kl_displacement_scale=2.0).validate()
    with pytest.raises(InputError, match="--kl-displacement-scale weighs a latent split, and this run has none"):
        resolve_auto(TrainConfig(dataset="-", rundir="-", **{**kw, "displacement_dims": None, "zdim": 2},
                                 kl_displacement_scale=2.0), cloud.n, 10)
