"""Particle loading for training: a torch Dataset over a memory-mapped dataset folder, and a resumable sampler.

The sampler yields whole batches of indices (a seeded permutation per epoch, resumable at any position); the
dataset reads a whole batch per call (one fancy-index into the memory map), so workers move batches, not single
images. Each worker re-opens the memory map itself (nothing big is pickled).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gaussianem.io.dataset import ParticleDataset, load_dataset
from gaussianem.physics.ctf import CTFParams


class ParticleBatchDataset(Dataset):
    """``ds[index]`` with an int or an index array (B,) -> dict of tensors:

    ``index`` (B,) int64, ``image`` (B, D, D) float32, ``rotation`` (B, 3, 3), ``shift`` (B, 2) Å,
    ``ctf`` (B, 7 + k) (:func:`packed_ctf`; absent without CTF), all float32; a :class:`ShardIndices` index adds its
    ``offset`` and ``global_size`` (ints). With ``rows`` (``train --ind``) item ``i`` is the dataset's particle
    ``rows[i]`` (``index`` stays ``i``).
    """

    def __init__(self, root: str | Path, dataset: ParticleDataset | None = None,
                 rows: np.ndarray | None = None) -> None:
        self.root = Path(root)
        self._ds = dataset if dataset is not None else load_dataset(self.root)
        self.rows = None if rows is None else np.asarray(rows, np.int64)
        self.n = self._ds.n if self.rows is None else len(self.rows)
        self.has_ctf = self._ds.ctf is not None

    def __getstate__(self) -> dict:  # workers re-open the memory map
        state = self.__dict__.copy()
        state["_ds"] = None
        return state

    def source_rows(self, idx: np.ndarray) -> np.ndarray:
        """The dataset rows of items ``idx``."""
        return idx if self.rows is None else self.rows[idx]

    @property
    def ds(self) -> ParticleDataset:
        if self._ds is None:
            self._ds = load_dataset(self.root)
        return self._ds

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        single = np.isscalar(index)
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        src = self.source_rows(idx)
        ds = self.ds
        out = {
            "index": torch.from_numpy(idx.copy()),
            "image": torch.from_numpy(np.ascontiguousarray(ds.images[src], dtype=np.float32)),
            "rotation": torch.from_numpy(np.asarray(ds.rotations[src], dtype=np.float32)),
            "shift": torch.from_numpy(np.asarray(ds.shifts_angstrom[src], dtype=np.float32)),
        }
        if ds.ctf is not None:
            out["ctf"] = packed_ctf(ds.ctf, src)
        if single:
            out = {k: v[0] for k, v in out.items()}
        out.update(shard_layout(index))
        return out


def packed_ctf(ctf: dict[str, np.ndarray], index: np.ndarray | slice | None = None, device=None) -> torch.Tensor:
    """A dataset's CTF fields (rows ``index``) as the (B, 7 + k) float32 columns a batch carries
    (:meth:`CTFParams.packed`; :meth:`CTFParams.from_packed` reads it back)."""
    return CTFParams.from_mapping(ctf, index, device=device, dtype=torch.float32).packed()


class ShardIndices(np.ndarray):
    """One rank's share (B,) int64 of a global batch, carrying where it lies in it: ``offset`` (its first row in the
    global batch) and ``global_size`` (the global batch size), host ints. It survives pickling (loader workers);
    arrays derived from it (slices, ``np.asarray`` views) carry no layout."""

    offset: int | None
    global_size: int | None

    def __new__(cls, indices: np.ndarray, offset: int, global_size: int) -> ShardIndices:
        obj = np.asarray(indices, dtype=np.int64).view(cls)
        obj.offset, obj.global_size = int(offset), int(global_size)
        return obj

    def __array_finalize__(self, obj) -> None:
        self.offset = self.global_size = None

    def __reduce__(self):
        fn, args, state = super().__reduce__()
        return fn, args, (state, self.offset, self.global_size)

    def __setstate__(self, state) -> None:
        base, self.offset, self.global_size = state
        super().__setstate__(base)


def shard_layout(item) -> dict[str, int]:
    """``{"offset", "global_size"}`` (host ints) of a :class:`ShardIndices` batch item; ``{}`` for anything else."""
    if isinstance(item, ShardIndices) and item.global_size is not None:
        return {"offset": item.offset, "global_size": item.global_size}
    return {}


class ResumableBatchSampler(Sampler):
    """Batches of indices from a seeded permutation per epoch; ``position`` batches of the epoch are skipped.

    The permutation of epoch ``e`` depends only on (seed, e), so a resumed run sees the same batches. Under
    data parallelism each global batch of ``batch_size × world_size`` indices is split across ranks
    (rank ``r`` takes the ``r``-th contiguous slice) and yielded as :class:`ShardIndices`, which carry the
    slice's offset and the global batch size into the batch dict (``offset``, ``global_size``): the training
    step then knows the global layout without asking the other ranks. A last global batch with fewer than 2
    images per rank is dropped (BatchNorm needs two); the next epoch's permutation covers those particles.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, position: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.position = epoch, position
        self.rank, self.world_size = rank, world_size

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def batches_per_epoch(self) -> int:
        full, rest = divmod(self.n, self.global_batch)
        return full + (1 if rest >= 2 * self.world_size else 0)

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.position)

    def __iter__(self) -> Iterator[np.ndarray]:
        perm = self.permutation(self.epoch)
        gb = self.global_batch
        for b in range(self.position, self.batches_per_epoch()):
            # sorted (contiguous reads from the memory map) before sharding, so that the rank shards laid end to
            # end are the single-process batch in the same order (per-row random draws then match)
            glob = np.sort(perm[b * gb:(b + 1) * gb])
            if self.world_size == 1:
                yield glob
                continue
            yield self.shard(glob)

    def shard(self, glob: np.ndarray) -> ShardIndices:
        """This rank's contiguous slice of a global batch (G,) -> :class:`ShardIndices` (np.array_split's sizes)."""
        g, w = len(glob), self.world_size
        base, extra = divmod(g, w)
        offset = self.rank * base + min(self.rank, extra)
        size = base + (1 if self.rank < extra else 0)
        return ShardIndices(glob[offset:offset + size], offset, g)


def make_loader(dataset: ParticleBatchDataset, sampler: Sampler | list, num_workers: int,
                device: torch.device) -> DataLoader:
    """A DataLoader over batches from ``sampler`` (each item is a whole batch), pinned on CUDA."""
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                      pin_memory=device.type == "cuda", persistent_workers=False,
                      prefetch_factor=4 if num_workers > 0 else None)


def batch_source(data: ParticleBatchDataset, batches, num_workers: int, device: torch.device,
                 resident: ResidentParticles | None = None):
    """Iterate the batches of ``batches`` (a sampler or a list of index arrays): gathered from device memory when
    the particles are resident there, else read through a DataLoader."""
    if resident is not None:
        return resident.batches(batches)
    return make_loader(data, batches, num_workers, device)


def sequential_batches(n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[np.ndarray]:
    """Index batches (in order) for the evaluation pass; under data parallelism each rank takes a shard."""
    idx = np.array_split(np.arange(n), world_size)[rank]
    return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]


class ResidentParticles:
    """The whole dataset held in device memory: a batch is gathered there by index, with no loader processes, no
    host-to-device image copies and no per-batch Python work beyond a few index_selects.

    Batches are the same dicts as :class:`ParticleBatchDataset` gives (``index`` stays a CPU tensor for error
    messages; ``device_index`` is the same indices on the device).
    """

    def __init__(self, data: ParticleBatchDataset, device: torch.device, chunk: int = 4096,
                 progress: bool = True) -> None:
        from tqdm.auto import tqdm

        from gaussianem.progress import bar_disabled

        ds = data.ds
        self.n, self.device = data.n, device
        d = ds.box_size
        self.images = torch.empty((data.n, d, d), dtype=torch.float32, device=device)
        for s in tqdm(range(0, data.n, chunk), desc="load particles", unit="chunk", disable=bar_disabled(progress),
                      leave=False):
            rows = slice(s, s + chunk) if data.rows is None else data.rows[s:s + chunk]
            block = torch.from_numpy(np.ascontiguousarray(ds.images[rows], dtype=np.float32))
            self.images[s:s + len(block)].copy_(block)
        f32 = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=device)  # noqa: E731
        every = slice(None) if data.rows is None else data.rows
        self.rotation = f32(ds.rotations[every])
        self.shift = f32(ds.shifts_angstrom[every])
        self.ctf = None if ds.ctf is None else packed_ctf(ds.ctf, every, device=device)

    @staticmethod
    def nbytes(data: ParticleBatchDataset) -> int:
        return int(data.n) * int(data.ds.box_size) ** 2 * 4

    def batches(self, batch_indices) -> Iterator[dict[str, torch.Tensor]]:
        """Batches for a sequence of index arrays (a sampler or a list): the indices go to the device once."""
        items = list(batch_indices)
        lists = [np.asarray(b, dtype=np.int64) for b in items]
        if not lists:
            return
        flat = torch.from_numpy(np.concatenate(lists)).to(self.device)
        start = 0
        for b, item in zip(lists, items, strict=True):
            sl = flat[start:start + len(b)]
            start += len(b)
            out = {"index": torch.from_numpy(b), "device_index": sl, "image": self.images.index_select(0, sl),
                   "rotation": self.rotation.index_select(0, sl), "shift": self.shift.index_select(0, sl),
                   **shard_layout(item)}
            if self.ctf is not None:
                out["ctf"] = self.ctf.index_select(0, sl)
            yield out


def want_resident(mode: str, data: ParticleBatchDataset, device: torch.device, fraction: float = 0.3) -> bool:
    """``--preload``: ``on`` / ``off``, or ``auto`` = on CUDA when the image stack takes at most ``fraction`` of the
    GPU's memory."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"preload must be auto, on or off, got {mode!r}")
    if mode != "auto":
        return mode == "on"
    if device.type != "cuda":
        return False
    total = torch.cuda.get_device_properties(device).total_memory
    return ResidentParticles.nbytes(data) <= fraction * total
