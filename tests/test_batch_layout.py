"""DDP steps take the global batch layout from the batch (the sampler's shard offsets), not from an all_gather.

Two gloo processes on the CPU; 23 particles in global batches of 8 make a last global batch of 7 split 4 / 3, the
case where rank 0's local size alone cannot tell the global size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import APIX, BOX, SMALL, make_dataset, tiny_cloud

from gaussianem.training.config import TrainConfig

N_PARTICLES = 23
PER_RANK = 4
WORLD = 2


def _stepper(n: int, rank: int, world: int, batch_size: int):
    from gaussianem.gaussians import GaussianCloud
    from gaussianem.model import losses as L
    from gaussianem.model.vae import GaussianVAE
    from gaussianem.training.objective import LossWeights, TrainingObjective, build_graphs, model_spec
    from gaussianem.training.step import Stepper

    cfg = TrainConfig(dataset="-", rundir="-", **{**SMALL, "box_size": BOX, "pixel_size_angstrom": APIX})
    pos, wid, amp = tiny_cloud()
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    torch.manual_seed(0)
    cloud = GaussianCloud(t(pos), t(wid), t(amp), 1.0, 2.0)
    model = GaussianVAE(cloud, model_spec(cfg, cloud, 1.0))
    model.set_base_trainable(False)
    dev = torch.device("cpu")
    if world > 1:
        from gaussianem.training.distributed import convert_batchnorm

        model = convert_batchnorm(model, dev)
    graphs = build_graphs(model, cfg, dev)
    objective = TrainingObjective(model, LossWeights.from_config(cfg), graphs, False,
                                  L.knn_counts(n, 8, 2, 2))
    wrapped = objective
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(objective)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    return Stepper(wrapped, opt, None, n, cfg.zdim, dev, 7, batch_size, rank, world, compile=False)


def _run(ds: str, rank: int, world: int, batch_size: int, record) -> None:
    """Two epochs with the kNN loss on (a seeded, full memory bank) through the DataLoader (one worker: the shard
    layout crosses a pickle), then two from resident particles, each from the same fresh weights. Each epoch ends
    with an uneven (4 / 3) global batch, and the steps after it check that its update was the single process's."""
    from gaussianem.training.data import ParticleBatchDataset, ResidentParticles, ResumableBatchSampler, make_loader

    data = ParticleBatchDataset(ds)
    for path in ("loader", "resident"):
        stepper = _stepper(data.n, rank, world, batch_size)
        stepper.objective.train()
        stepper.bank.copy_(torch.randn(stepper.bank.shape, generator=torch.Generator().manual_seed(11)))
        stepper.bank_filled.fill_(True)
        stepper.refresh_bank()
        resident = ResidentParticles(data, torch.device("cpu"), progress=False) if path == "resident" else None
        for epoch in (1, 2):
            sampler = ResumableBatchSampler(data.n, batch_size, seed=5, epoch=epoch, rank=rank, world_size=world)
            batches = make_loader(data, sampler, 1, torch.device("cpu")) if resident is None \
                else resident.batches(sampler)
            for batch in batches:
                record(stepper, batch)
        assert stepper.flush() == []


def _worker(rank: int, world: int, store: str, ds: str, out: str) -> None:
    import faulthandler

    import torch.distributed as dist

    faulthandler.enable(all_threads=True)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    calls = [0]
    real = dist.all_gather

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    dist.all_gather = counting  # the Stepper looks it up at call time
    steps = []

    def record(stepper, batch) -> None:
        local = len(batch["index"])
        c0 = calls[0]
        from_batch = stepper._global_layout(local, batch)
        c1 = calls[0]
        gathered = stepper._global_layout(local)  # the fallback: one all_gather of the local sizes
        c2 = calls[0]
        results = stepper.step(batch, True)
        steps.append({"local": local, "layout": [batch["offset"], batch["global_size"]],
                      "from_batch": list(from_batch), "gathered": list(gathered), "calls_layout": c1 - c0,
                      "calls_fallback": c2 - c1, "calls_step": calls[0] - c2,
                      "values": [r.values for r in results]})

    try:
        _run(ds, rank, world, PER_RANK, record)
        Path(out, f"rank{rank}.json").write_text(json.dumps(steps))
        dist.barrier()  # neither rank tears the group down while the other still talks
    finally:
        dist.destroy_process_group()
    # the results are on disk: leave without the interpreter's teardown, where a gloo process aborted now and then
    # ("terminate called without an active exception", no Python frame: C++ objects destroyed at exit), which
    # mp.spawn reports as a failed rank
    os._exit(0)


def test_ddp_layout_comes_from_the_batch_without_all_gather(tmp_path):
    import torch.multiprocessing as mp

    ds = tmp_path / "ds"
    make_dataset(ds, n=N_PARTICLES, seed=6)
    mp.spawn(_worker, args=(WORLD, str(tmp_path / "store"), str(ds), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert len(ranks[0]) == len(ranks[1]) == 12  # 3 global batches (8, 8, 7) per epoch, 2 epochs, 2 runs
    for r, steps in enumerate(ranks):
        for s in steps:
            assert s["from_batch"] == s["layout"] == s["gathered"], (r, s)
            assert s["calls_layout"] == 0 and s["calls_fallback"] == 1
            assert s["calls_step"] == 2, s  # only the memory bank's index and latent gathers remain
    assert [s["layout"] for s in ranks[0]][2] == [0, 7] and [s["layout"] for s in ranks[1]][2] == [4, 7]
    assert [s["local"] for s in ranks[0]][2] == 4 and [s["local"] for s in ranks[1]][2] == 3

    single = []
    _run(str(ds), 0, 1, PER_RANK * WORLD, lambda stepper, batch: single.append(stepper.step(batch, True)[0].values))
    for r in range(WORLD):
        vals = [s["values"][0] for s in ranks[r]]
        assert len(vals) == len(single)
        for step, (a, b) in enumerate(zip(single, vals, strict=True)):
            np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-6, err_msg=f"rank {r} step {step + 1}")
    assert all(v[3] > 0 for v in single)  # the kNN term is on (the layout also places its per-row draws)
    assert single[0] != pytest.approx(single[1])
    assert single[6] == pytest.approx(single[0], rel=1e-5)  # both data paths start from the same weights
