"""The heterogeneity training loop (``gaussianem train``).

One step, for a batch of B particles and G Gaussians, with no per-image Python loop:

1. image encoder on the windowed, normalised images -> mu, logvar (B, zdim); z = mu + σ·ε;
2. Gaussian encoder on the base attributes -> embedding (G, E), once for the whole step;
3. decoder over all (B, G) pairs with the split first layer -> Δ (B, G, 4|5);
4. one batched projection of the B deformed clouds (B, G, ·) and the CTF in Fourier space, float32;
5. losses: render L1 + weighted KL, latent kNN (after ``knn_start_epoch``), geometric regularisers;
6. backward, finiteness check (a non-finite loss or gradient never reaches the weights: on the CPU the step
   stops before the optimiser; on CUDA the fused AdamW skips it on the device and the host stops the run one
   step later, naming the step and its particles), AdamW step, memory-bank update.

The MLPs run under bf16 autocast on CUDA (``amp``); projection, CTF and losses in float32. All random draws
(ε, kNN samples) are made outside the objective, for the global batch, from one seeded generator and sliced per
rank, so a data-parallel run sees the same numbers as a single process and the objective is a pure function of
fixed-shape tensors: on one GPU it is compiled and replayed as CUDA graphs. Particles that fit in GPU memory are
held there (:class:`~gaussianem.training.data.ResidentParticles`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from gaussianem.devices import resolve_device
from gaussianem.errors import InputError
from gaussianem.gaussians import GaussianCloud
from gaussianem.io.dataset import load_dataset
from gaussianem.io.writes import atomic_path
from gaussianem.model import losses as L
from gaussianem.model.vae import GaussianVAE, ModelSpec
from gaussianem.physics.ctf import CTFParams
from gaussianem.training.checkpoint import (
    list_checkpoints,
    model_from_checkpoint,
    newest_loadable_checkpoint,
    read_checkpoint,
    resolve_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
    weights_path,
)
from gaussianem.training.config import CONFIG, RUNTIME_FIELDS, TrainConfig, read_config
from gaussianem.training.data import (
    ParticleBatchDataset,
    ResidentParticles,
    ResumableBatchSampler,
    batch_source,
    sequential_batches,
    want_resident,
)
from gaussianem.training.plot import plot_losses

log = logging.getLogger(__name__)

LOSS_TERMS = ("render", "kl", "knn", "smoothness", "distance", "alignment", "repulsion", "amplitude",
              "amplitude_gain")
LOG = "log.jsonl"
BASE_PLY = "gaussians_base.ply"


class TrainingError(RuntimeError):
    """A training run cannot go on (non-finite loss, out of memory): the message says what to do."""


class NonFiniteLossError(TrainingError):
    def __init__(self, step: int, epoch: int, indices: np.ndarray, terms: dict[str, float]) -> None:
        bad = ", ".join(f"{k}={v}" for k, v in terms.items() if not math.isfinite(v))
        super().__init__(
            f"non-finite loss at step {step} (epoch {epoch}) [{bad}]; particle indices of the batch: "
            f"{indices.tolist()}; no checkpoint was written from this state (check these images, lower --lr)")
        self.step, self.epoch, self.indices = step, epoch, indices


@dataclass(frozen=True)
class LossWeights:
    kl: float
    knn: float
    smoothness: float
    distance: float
    alignment: float
    repulsion: float
    amplitude: float = 0.0
    amplitude_gain: float = 0.0

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> LossWeights:
        return cls(cfg.kl_weight, cfg.knn_weight, cfg.smoothness_weight, cfg.distance_weight,
                   cfg.alignment_weight, cfg.repulsion_weight, cfg.amplitude_weight,
                   cfg.amplitude_gain_weight)

    def as_tensor(self, device) -> Tensor:
        return torch.tensor([1.0, self.kl, self.knn, self.smoothness, self.distance, self.alignment,
                             self.repulsion, self.amplitude, self.amplitude_gain], device=device)


def model_spec(cfg: TrainConfig, cloud: GaussianCloud, image_std: float) -> ModelSpec:
    return ModelSpec(
        box_size=int(cfg.box_size), pixel_size_angstrom=float(cfg.pixel_size_angstrom), n_gaussians=cloud.n,
        width_min=cloud.width_min, width_max=cloud.width_max, image_std=float(image_std), zdim=cfg.zdim,
        encoder_hidden=cfg.encoder_hidden, encoder_layers=cfg.encoder_layers, gaussian_hidden=cfg.gaussian_hidden,
        gaussian_layers=cfg.gaussian_layers, embedding_dim=cfg.embedding_dim, decoder_hidden=cfg.decoder_hidden,
        decoder_layers=cfg.decoder_layers, decoder_features=cfg.decoder_features, predict_width=cfg.predict_width,
        position_scale_angstrom=cfg.position_scale_angstrom, window_radius=cfg.window_radius,
        window_edge=cfg.window_edge, projection_chunk=cfg.projection_chunk)


class TrainingObjective(nn.Module):
    """The VAE plus its losses: ``forward`` returns (total loss, unweighted terms (7,), mu (B, zdim)).

    This is the module wrapped by DistributedDataParallel; graphs are fixed tensors of the base cloud.
    """

    def __init__(self, model: GaussianVAE, weights: LossWeights, graph: L.RadiusGraph, wide_graph: L.RadiusGraph,
                 repulsion_distance: float, amp: bool, knn_counts: tuple[int, int, int]) -> None:
        super().__init__()
        self.model = model
        self.weights = weights
        self.graph, self.wide_graph = graph, wide_graph
        self.repulsion_distance = repulsion_distance
        self.amp = amp
        self.knn_counts = knn_counts
        self.register_buffer("weight_vector", weights.as_tensor("cpu"), persistent=False)

    def forward(self, images: Tensor, rotations: Tensor, shifts: Tensor, ctf: Tensor | None, eps: Tensor,
                knn_cand: Tensor | None = None, knn_pick: Tensor | None = None,
                knn_uniform: Tensor | None = None, knn_on: Tensor | None = None,
                amplitude_on: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """images (B, D, D) raw; rotations (B, 3, 3); shifts (B, 2) Å; ctf (B, 7) or None; eps (B, zdim);
        knn_* the kNN loss's drawn samples (:class:`losses.KnnSamples`; None: kNN loss inactive); knn_on () 1 or
        0 multiplies the kNN term (0 with placeholder samples: one compiled graph whether the loss is on or off);
        amplitude_on () 1 or 0 multiplies the decoded amplitude changes (0: the particle's cloud differs from the
        base only by its displacements; a tensor, so that switching it does not compile a second graph).

        A pure function of its tensor arguments (every random draw is made by the caller), with fixed shapes for
        a fixed batch size, so that on CUDA the whole forward and backward can be captured as CUDA graphs."""
        model = self.model
        dev = images.device
        use_amp = self.amp and dev.type == "cuda"
        x = model.preprocess(images)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            mu, logvar = model.encode_preprocessed(x)
            mu, logvar = mu.float(), logvar.float()
            z = mu + torch.exp(0.5 * logvar) * eps
            embedding = model.embed()
            deltas = model.decode_deltas(z, embedding)
        if amplitude_on is not None:
            deltas = torch.cat([deltas[..., :1] * amplitude_on, deltas[..., 1:]], dim=-1)
        positions, widths, amplitudes = model.apply_deltas(deltas)
        rendered = model.render(positions, widths, amplitudes, rotations, shifts,
                                None if ctf is None else CTFParams.from_packed(ctf))
        zero = x.new_zeros(())
        render = L.render_l1(rendered, x, model.window)
        kl = L.kl_divergence(mu, logvar)
        knn = zero
        if knn_cand is not None:
            knn = L.knn_loss_from_samples(mu, L.KnnSamples(knn_cand, knn_pick, knn_uniform), self.knn_counts[1])
            if knn_on is not None:
                knn = knn * knn_on
        w = self.weights
        smooth = L.smoothness_loss(embedding, self.graph) if w.smoothness else zero
        dist = L.distance_loss(positions, self.graph) if w.distance else zero
        align = L.alignment_loss(deltas[..., 1:4], self.wide_graph) if w.alignment else zero
        rep = L.repulsion_loss(positions, self.wide_graph, self.repulsion_distance) if w.repulsion else zero
        amp_change = L.amplitude_change_loss(deltas[..., 0]) if w.amplitude else zero
        amp_gain = L.amplitude_change_loss(torch.relu(deltas[..., 0])) if w.amplitude_gain else zero
        terms = torch.stack([render, kl, knn, smooth, dist, align, rep, amp_change, amp_gain])
        total = (terms * self.weight_vector).sum()
        return total, terms, mu


def build_graphs(cloud: GaussianCloud, cfg: TrainConfig, device) -> tuple[L.RadiusGraph, L.RadiusGraph, float]:
    pos = cloud.positions.detach().cpu().double().numpy()
    mean_nn = L.mean_nearest_neighbour_distance(pos)
    g1 = L.radius_graph(pos, cfg.graph_radius, mean_nn, device)
    g2 = L.radius_graph(pos, cfg.alignment_radius, mean_nn, device)
    log.info("radius graphs: %d edges (r = %.2f Å), %d edges (r = %.2f Å); mean NN distance %.2f Å",
             g1.n_edges, cfg.graph_radius * mean_nn, g2.n_edges, cfg.alignment_radius * mean_nn, mean_nn)
    return g1, g2, cfg.repulsion_fraction * mean_nn


@contextlib.contextmanager
def tf32_matmuls(on: bool) -> Iterator[None]:
    """Inside, float32 matrix products may run on TF32 tensor cores (inputs rounded to 10-bit mantissas, float32
    accumulation; CUDA only) when ``on``, and may not when not; the previous setting is restored on exit."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = bool(on)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def compile_mode(cudagraphs: bool, autotune: bool = False) -> str | None:
    """torch.compile mode of the training step: CUDA graphs or not, autotuned GEMMs (max-autotune) or not."""
    if autotune:
        return "max-autotune" if cudagraphs else "max-autotune-no-cudagraphs"
    return "reduce-overhead" if cudagraphs else None


class StepResult(NamedTuple):
    """One finished training step: its number, epoch, global batch size and [total, *LOSS_TERMS] (global means)."""

    step: int
    epoch: int
    batch: int
    values: list[float]


class Stepper:
    """Runs training steps of a :class:`TrainingObjective` (optionally DDP-wrapped) and owns the memory bank.

    ``step(batch)`` -> the :class:`StepResult` of every step that finished (checked) during the call. On the CPU
    the step is checked at once (one list). On CUDA the check is deferred by one step so that the host never
    waits for the GPU: the step's finiteness (loss terms and every gradient) is computed on the device and handed
    to the fused AdamW as ``found_inf``, which then skips the update of a non-finite step (the weights keep their
    last finite values); the host reads the flag one step later and raises :class:`NonFiniteLossError` naming
    that step and its particles. ``flush()`` returns the result of the last pending step (call it at the end of
    an epoch). With ``cudagraphs`` (CUDA, one process, compile on) and ``step_graph`` (the default there) the
    whole step -- forward, backward, finiteness check, fused AdamW, memory-bank update -- is captured as one CUDA
    graph after ``GRAPH_WARMUP`` ordinary steps and replayed: one launch per step, so the host's Python and
    autograd no longer bound it. A capture that fails falls back (with a warning, ``graph_error`` set) to compiled
    steps without graphs. With ``step_graph=False`` the objective is compiled with ``mode="reduce-overhead"``:
    forward and backward replay as torch.compile's CUDA graphs, the optimizer runs outside them.
    """

    def __init__(self, objective: nn.Module, optimizer: torch.optim.Optimizer, scheduler, n_particles: int,
                 zdim: int, device: torch.device, seed: int, batch_size: int, rank: int = 0,
                 world_size: int = 1, compile: bool | None = None, cudagraphs: bool | None = None,
                 deferred_check: bool | None = None, amplitude_start_epoch: int = 0,
                 autotune: bool = False, step_graph: bool | None = None) -> None:
        self.objective = objective
        self.amplitude_start_epoch = int(amplitude_start_epoch)
        use_compile = device.type == "cuda" if compile is None else compile
        if cudagraphs is None:
            cudagraphs = device.type == "cuda" and world_size == 1
        self.cudagraphs = bool(use_compile and cudagraphs and device.type == "cuda")
        fused = any(bool(g.get("fused")) for g in optimizer.param_groups)
        if deferred_check is None:
            deferred_check = device.type == "cuda"
        self.deferred = bool(deferred_check and fused)
        # the whole step (forward, backward, finiteness check, AdamW, bank update) as one CUDA graph: one launch
        # per step, so the host's Python and autograd no longer bound the step (needs one process, the fused
        # AdamW and the deferred check); otherwise forward and backward replay as torch.compile's CUDA graphs
        if step_graph is None:  # on wherever it can be (checked on an H200: benchmarks/RESULTS.md, 2026-12-03)
            step_graph = True
        self.step_graph = bool(step_graph and self.cudagraphs and self.deferred and world_size == 1)
        if use_compile:
            tree_graphs = self.cudagraphs and not self.step_graph
            self.forward = torch.compile(objective, mode=compile_mode(tree_graphs, autotune))
        else:
            self.forward = objective
        self.compiled = bool(use_compile)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_warm = 0  # real steps run (on a side stream) before the capture
        self._graph_failed = False
        self.graph_error: str | None = None
        self.graph_traceback: str | None = None
        # on/off switches of the compiled step: one tensor per argument, never the same object for two arguments
        # (an aliased pair of inputs makes torch.compile guard on it, recompile and drop the CUDA graphs)
        self._one = torch.ones((), device=device)
        self._zero = torch.zeros((), device=device)
        self._amp_one = torch.ones((), device=device)
        self._amp_zero = torch.zeros((), device=device)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.pending: tuple | None = None
        self.device = device
        self.rank, self.world_size = rank, world_size
        self.batch_size = batch_size
        self.knn_counts = getattr(objective, "module", objective).knn_counts
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(int(seed))
        self.bank = torch.zeros(n_particles, zdim, device=device)
        self.bank_filled = torch.zeros(n_particles, dtype=torch.bool, device=device)
        self.bank_rows: Tensor | None = None
        self.n_bank_rows = 0
        self.step_count = 0
        self.epoch = 1
        # seconds the host spent waiting for the device in flush(): near 0 means the step is host-bound (Python,
        # launches), near the step time means device-bound
        self.host_wait_s = 0.0

    def refresh_bank(self) -> None:
        """Select the filled bank rows once per epoch (no host sync inside steps)."""
        self.bank_rows = torch.nonzero(self.bank_filled).flatten()
        self.n_bank_rows = int(self.bank_rows.numel())

    def _global_layout(self, local: int, batch: dict | None = None) -> tuple[int, int]:
        """(offset of this rank's rows in the global batch, global batch size) for a local batch of ``local`` rows.

        Under DDP the layout comes from the batch's ``offset`` / ``global_size`` (host ints the sampler's
        :class:`~gaussianem.training.data.ShardIndices` put there): no communication, no host sync. A batch
        without them costs one all_gather of the local sizes and a host read of the result.
        """
        if self.world_size == 1:
            return 0, local
        if batch is not None and "global_size" in batch:
            offset, global_b = int(batch["offset"]), int(batch["global_size"])
            if not (0 <= offset and offset + local <= global_b):
                raise ValueError(f"batch layout offset {offset}, global size {global_b} does not hold the "
                                 f"{local} rows of rank {self.rank}")
            return offset, global_b
        import torch.distributed as dist

        sizes = torch.tensor([local], device=self.device)
        all_sizes = [torch.zeros_like(sizes) for _ in range(self.world_size)]
        dist.all_gather(all_sizes, sizes)
        all_sizes = [int(s) for s in all_sizes]
        return sum(all_sizes[:self.rank]), sum(all_sizes)

    def _knn_samples(self, b: int, offset: int, global_b: int) -> L.KnnSamples:
        n_sample, n_near, n_far = self.knn_counts
        return L.draw_knn_samples(self.bank[self.bank_rows], n_near, n_far, n_sample, b, self.generator, offset,
                                  global_b)

    def step(self, batch: dict[str, Tensor], knn_active: bool) -> list[StepResult]:
        dev = self.device
        images = batch["image"].to(dev, non_blocking=True)
        rotations = batch["rotation"].to(dev, non_blocking=True)
        shifts = batch["shift"].to(dev, non_blocking=True)
        ctf = batch["ctf"].to(dev, non_blocking=True) if "ctf" in batch else None
        index = batch["device_index"] if "device_index" in batch else batch["index"].to(dev, non_blocking=True)
        b = images.shape[0]
        offset, global_b = self._global_layout(b, batch)
        eps = torch.randn(global_b, self.bank.shape[1], device=dev, generator=self.generator)[offset:offset + b]
        knn: tuple = ()
        if knn_active and self.bank_rows is not None and self.n_bank_rows > 1:
            s = self._knn_samples(b, offset, global_b)
            knn = (s.cand, s.pick, s.uniform, self._one)
        elif self.compiled:  # the same graph before the bank exists: placeholder samples, the term switched off
            n_sample, n_near, n_far = self.knn_counts
            s = L.placeholder_knn_samples(n_near, n_far, n_sample, b, self.bank.shape[1], dev)
            knn = (s.cand, s.pick, s.uniform, self._zero)
        amp_on = self._amp_one if self.epoch > self.amplitude_start_epoch else self._amp_zero
        args = (images, rotations, shifts, ctf, eps, *knn, amp_on)
        self.step_count += 1
        info = (self.step_count, self.epoch, global_b, batch["index"])
        if self.step_graph and not self._graph_failed and b == self.batch_size:
            if self._graph is not None or self._graph_warm >= self.GRAPH_WARMUP:
                return self._graph_step(args, index, info)
            self._graph_warm += 1
            main = torch.cuda.current_stream(dev)
            side = self._capture_stream()
            side.wait_stream(main)
            # warm-up steps, real ones, on the stream the capture will use: autograd's gradient accumulators
            # remember the stream they were made on, and one made on another stream breaks the capture
            with torch.cuda.stream(side):
                done = self._eager_step(args, index, info, b, global_b)
            main.wait_stream(side)
            return done
        return self._eager_step(args, index, info, b, global_b)

    GRAPH_WARMUP = 3

    def _capture_stream(self) -> torch.cuda.Stream:
        if getattr(self, "_side", None) is None:
            self._side = torch.cuda.Stream(self.device)
        return self._side

    def _forward_backward(self, args: tuple, b: int, global_b: int) -> tuple[Tensor, Tensor]:
        """Forward and backward of one step -> ([total, *terms] (1 + n_terms,), mu (B, zdim)); gradients in .grad."""
        *tensors, amp_on = args
        if self.cudagraphs and not self.step_graph:
            torch.compiler.cudagraph_mark_step_begin()
        total, terms, mu = self.forward(*tensors, amplitude_on=amp_on)
        if self.world_size > 1 and b * self.world_size != global_b:
            # DDP averages the ranks' gradients with equal weights: weight this shard's mean by its share of an
            # uneven global batch, so the update is the single process's gradient of the global-batch mean
            (total * (b * self.world_size / global_b)).backward()
        else:
            total.backward()
        values_t = torch.cat([total.detach()[None], terms.detach()])
        if self.world_size > 1:  # the global batch's means, identical on every rank (one small all-reduce)
            import torch.distributed as dist

            values_t = values_t * (b / global_b)
            dist.all_reduce(values_t)
        return values_t, mu

    def _nonfinite(self, values_t: Tensor) -> Tensor:
        """() bool on the device: a loss term or any gradient is not finite."""
        grads = [p.grad for p in self.params if p.grad is not None]
        bad = ~torch.isfinite(values_t).all()
        if grads:
            bad = bad | ~torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()
        return bad

    def _eager_step(self, args: tuple, index: Tensor, info: tuple, b: int, global_b: int) -> list[StepResult]:
        self.optimizer.zero_grad(set_to_none=True)
        values_t, mu = self._forward_backward(args, b, global_b)
        if not self.deferred:
            values = values_t.tolist()
            result = self._check(info, values)
            self._apply(index, mu)
            return [result]
        bad = self._nonfinite(values_t)
        self.optimizer.found_inf = bad.float().reshape(())  # the fused AdamW skips a non-finite step on the device
        return self._defer(values_t, bad, info, lambda: self._apply(index, mu))

    def _defer(self, values_t: Tensor, bad: Tensor, info: tuple, launch) -> list[StepResult]:
        """Queue the host copy of this step's values, run ``launch`` (the update), check the previous step."""
        host = torch.cat([values_t, bad.float().reshape(1)]).to("cpu", non_blocking=True)
        event = torch.cuda.Event() if self.device.type == "cuda" else None
        if event is not None:
            event.record()
        launch()
        done = self.flush()
        self.pending = (event, host, info)
        return done

    def _graph_step(self, args: tuple, index: Tensor, info: tuple) -> list[StepResult]:
        """One step as a replay of the captured whole-step CUDA graph (captured on the first call)."""
        if self._graph is None:
            try:
                self._capture(args, index)
            except Exception as exc:  # a capture that fails leaves the per-part path, slower but the same step
                log.warning("the whole training step could not be captured as one CUDA graph (%s: %s); "
                            "continuing without it", type(exc).__name__, exc)
                self._graph, self._graph_failed = None, True
                self.graph_error = f"{type(exc).__name__}: {exc}"
                self.graph_traceback = traceback.format_exc()
                log.debug("whole-step capture:\n%s", self.graph_traceback)
                for g in self.optimizer.param_groups:
                    g["capturable"] = False
                torch.cuda.synchronize(self.device)
                return self._eager_step(args, index, info, self.batch_size, self.batch_size)
        else:
            for static, a in zip(self._static_args, args, strict=True):
                if static is not None:
                    static.copy_(a, non_blocking=True)
            self._static_index.copy_(index, non_blocking=True)
        self._graph.replay()
        values_t, bad = self._static_out
        return self._defer(values_t, bad, info, self._schedule)

    def _schedule(self) -> None:
        """The scheduler's step after a replay: it fills the device lr tensors that the graph reads, in place."""
        if self.scheduler is None:
            return
        self.scheduler.step()
        for g, lr in zip(self.optimizer.param_groups, self._lr, strict=True):
            if g["lr"] is not lr:  # a scheduler that assigned a float: copy it into the tensor the graph reads
                lr.fill_(float(g["lr"]))
                g["lr"] = lr

    def _capture(self, args: tuple, index: Tensor) -> None:
        dev = self.device
        opt = self.optimizer
        for g in opt.param_groups:  # the fused AdamW reads its step counts and the lr from the device
            g["capturable"] = True
            if not isinstance(g["lr"], Tensor):
                g["lr"] = torch.tensor(float(g["lr"]), dtype=torch.float32, device=dev)
        self._lr = [g["lr"] for g in opt.param_groups]
        self._static_args = tuple(a.clone() if isinstance(a, Tensor) else a for a in args)
        self._static_index = index.clone()
        found_inf = torch.zeros((), device=dev)
        opt.found_inf = found_inf
        opt.zero_grad(set_to_none=True)
        side = self._capture_stream()
        side.wait_stream(torch.cuda.current_stream(dev))
        torch.cuda.synchronize(dev)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
            values_t, mu = self._forward_backward(self._static_args, self.batch_size, self.batch_size)
            bad = self._nonfinite(values_t)
            found_inf.copy_(bad.float().reshape(()))
            opt.step()
            self.update_bank(self._static_index, mu.detach())
        self._graph, self._static_out = graph, (values_t, bad)
        self._graph_grads = [p.grad for p in self.params]  # the graph's own gradient buffers, kept alive
        log.info("training step captured as one CUDA graph (batch %d)", self.batch_size)

    def _apply(self, index: Tensor, mu: Tensor) -> None:
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.update_bank(index, mu.detach())

    def _check(self, info: tuple, values: list[float], bad: bool = False) -> StepResult:
        step, epoch, global_b, indices = info
        if bad or not all(math.isfinite(v) for v in values):
            terms = dict(zip(("loss",) + LOSS_TERMS, values, strict=True))
            if all(math.isfinite(v) for v in values):
                terms["gradient"] = math.inf
            raise NonFiniteLossError(step, epoch, indices.numpy(), terms)
        return StepResult(step, epoch, global_b, values)

    def flush(self) -> list[StepResult]:
        """Wait for the pending (deferred) step, check it and return its result ([] when none is pending)."""
        if self.pending is None:
            return []
        event, host, info = self.pending
        self.pending = None
        if event is not None:
            t0 = time.perf_counter()
            event.synchronize()
            self.host_wait_s += time.perf_counter() - t0
        vals = host.tolist()
        return [self._check(info, vals[:-1], bad=vals[-1] != 0.0)]

    def update_bank(self, index: Tensor, mu: Tensor) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            pad = self.batch_size - index.shape[0]
            idx = torch.cat([index, index.new_full((pad,), -1)])
            m = torch.cat([mu.float(), mu.new_zeros(pad, mu.shape[1])])
            idxs = [torch.empty_like(idx) for _ in range(self.world_size)]
            ms = [torch.empty_like(m) for _ in range(self.world_size)]
            dist.all_gather(idxs, idx)
            dist.all_gather(ms, m)
            idx, m = torch.cat(idxs), torch.cat(ms)
            keep = idx >= 0
            index, mu = idx[keep], m[keep]
        # index_copy_/index_fill_ rather than ``bank[index] = ...``: assigning a Python scalar copies a CPU tensor to
        # the device, which a CUDA graph capture refuses
        self.bank.index_copy_(0, index, mu.float())
        self.bank_filled.index_fill_(0, index, True)

    def state(self) -> dict:
        opt = self.optimizer.state_dict()
        for g in opt["param_groups"]:  # as plain settings: a checkpoint of a graphed step resumes anywhere
            if isinstance(g.get("lr"), Tensor):
                g["lr"] = float(g["lr"])
            if "capturable" in g:
                g["capturable"] = False
        return {"optimizer": opt,
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "bank": self.bank.cpu(), "bank_filled": self.bank_filled.cpu(), "step": self.step_count,
                "generator": self.generator.get_state()}

    def load_state(self, st: dict) -> None:
        self.optimizer.load_state_dict(st["optimizer"])
        if self.scheduler is not None and st.get("scheduler") is not None:
            self.scheduler.load_state_dict(st["scheduler"])
        self.bank.copy_(st["bank"].to(self.device))
        self.bank_filled.copy_(st["bank_filled"].to(self.device))
        self.step_count = int(st["step"])
        self.generator.set_state(st["generator"])


@torch.no_grad()
def evaluate_latents(model: GaussianVAE, dataset: ParticleBatchDataset, batch_size: int, device: torch.device,
                     num_workers: int = 0, amp: bool = True, progress: bool = True, rank: int = 0,
                     world_size: int = 1, resident: ResidentParticles | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Encode every particle (eval mode) -> mu (N, zdim), logvar (N, zdim) float32 (rank 0 holds all rows)."""
    was_training = model.training
    model.eval()
    batches = sequential_batches(dataset.n, batch_size, rank, world_size)
    loader = batch_source(dataset, batches, num_workers, device, resident)
    mus, lvs = [], []
    use_amp = amp and device.type == "cuda"
    for batch in tqdm(loader, total=len(batches), desc="encode", unit="batch", disable=not progress, leave=False):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            mu, lv = model.encode(batch["image"].to(device, non_blocking=True))
        mus.append(mu.float())
        lvs.append(lv.float())
    mu = torch.cat(mus) if mus else torch.zeros(0, model.zdim, device=device)
    lv = torch.cat(lvs) if lvs else torch.zeros(0, model.zdim, device=device)
    if world_size > 1:
        import torch.distributed as dist

        sizes = [len(s) for s in np.array_split(np.arange(dataset.n), world_size)]
        pad = max(sizes) - mu.shape[0]
        both = torch.cat([mu, lv], 1)
        both = torch.cat([both, both.new_zeros(pad, both.shape[1])])
        parts = [torch.empty_like(both) for _ in range(world_size)]
        dist.all_gather(parts, both)
        both = torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])
        mu, lv = both[:, :model.zdim], both[:, model.zdim:]
    model.train(was_training)
    return mu.cpu().numpy(), lv.cpu().numpy()


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def resolve_base_cloud(cfg: TrainConfig) -> Path:
    """--gaussians PLY, else DATASET/gaussians.ply (after ``fit``), else DATASET/gaussians_init.ply."""
    if cfg.gaussians:
        p = Path(cfg.gaussians)
        if not p.is_file():
            raise InputError(f"--gaussians: file not found: {p}")
        return p
    root = Path(cfg.dataset)
    for name in ("gaussians.ply", "gaussians_init.ply"):
        if (root / name).is_file():
            return root / name
    raise InputError(f"{root}: no gaussians.ply or gaussians_init.ply; run 'gaussianem fit' or give --gaussians")


def _run_outputs(rundir: Path) -> list[Path]:
    pats = ["weights.*.pt", "z.*.npy", "z_logvar.*.npy", LOG, "loss.png", CONFIG, BASE_PLY]
    return [p for pat in pats for p in rundir.glob(pat)]


def prepare_rundir(cfg: TrainConfig, resume: bool, overwrite: bool) -> TrainConfig:
    """Check the run folder; returns the config to use (the saved one, with runtime fields, on --resume)."""
    root = Path(cfg.rundir)
    epochs = list_checkpoints(root)
    has_config = (root / CONFIG).is_file()
    if resume:
        if not has_config:
            raise InputError(f"--resume: {root} holds no run to resume (no {CONFIG})")
        saved = TrainConfig.from_dict(read_config(root))
        return saved.replace(**{k: getattr(cfg, k) for k in RUNTIME_FIELDS}, command_line=cfg.command_line)
    if epochs or has_config:
        if not overwrite:
            saved = read_config(root) if has_config else {}
            total = saved.get("epochs")
            if epochs and total is not None and epochs[-1] >= int(total):
                what = f"a finished run ({epochs[-1]} epochs)"
            elif epochs:
                what = f"an interrupted run (last complete epoch {epochs[-1]})"
            else:
                what = "a run that has no complete epoch yet"
            raise InputError(f"{root} holds {what}; use --resume to continue it or --overwrite to replace it")
        for p in _run_outputs(root):
            p.unlink()
        log.info("--overwrite: removed the previous run's outputs in %s", root)
    return cfg


def _trim_log(path: Path, last_epoch: int) -> None:
    """On resume: keep only the log records of complete epochs (<= last_epoch)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("epoch", 0) <= last_epoch:
            keep.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(k + "\n" for k in keep))


def _oom_message(cfg: TrainConfig) -> str:
    return (f"CUDA out of memory (batch {cfg.batch_size}, {cfg.n_gaussians} Gaussians, box {cfg.box_size}, "
            f"amp {'on' if cfg.amp else 'off'}): lower --batch-size, set a smaller --projection-chunk, "
            f"use fewer Gaussians, or turn on --amp")


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False,
          stop_after_epoch: int | None = None, rank: int = 0, world_size: int = 1,
          on_epoch_end: Callable[[int], None] | None = None) -> Path:
    """Train (or resume) a run; returns the run folder. ``stop_after_epoch`` ends early (a test hook)."""
    t_start = time.perf_counter()
    cfg.validate()
    main_rank = rank == 0
    root = Path(cfg.rundir)
    error = None
    if main_rank:
        try:
            cfg = prepare_rundir(cfg, resume, overwrite)
        except InputError as exc:
            error = str(exc)
    if world_size > 1:  # every rank learns rank 0's verdict on the run folder, then reads the same settings
        import torch.distributed as dist

        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error is not None:
        raise InputError(error)
    if not main_rank and resume:
        cfg = TrainConfig.from_dict(read_config(root)).replace(**{k: getattr(cfg, k) for k in RUNTIME_FIELDS})
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    ds = load_dataset(cfg.dataset)
    if ds.box_size % 2:
        raise InputError(f"{cfg.dataset}: box size {ds.box_size} is odd; training needs an even box")
    image_std = float(ds.manifest.get("image_std", 1.0) or 1.0)
    torch.manual_seed(cfg.seed)  # the weights' initialisation
    np.random.seed(cfg.seed % 2**32)
    ckpt = newest_loadable_checkpoint(root) if resume else None
    if ckpt is not None:
        model = model_from_checkpoint(ckpt)
        if cfg.epochs <= ckpt["epoch"]:
            log.info("%s: already trained for %d epochs (asked for %d): nothing to do", root, ckpt["epoch"],
                     cfg.epochs)
            return root
    else:
        ply = resolve_base_cloud(cfg) if not resume or cfg.base_cloud_source is None \
            else Path(cfg.base_cloud_source)
        cloud = GaussianCloud.from_ply(ply)
        origin = ds.manifest.get("working_origin_angstrom")
        cfg = cfg.replace(box_size=ds.box_size, pixel_size_angstrom=ds.pixel_size_angstrom, n_particles=ds.n,
                          n_gaussians=cloud.n, base_cloud_source=str(ply),
                          map_origin_angstrom=cfg.map_origin_angstrom if origin is None
                          else tuple(float(v) for v in origin))
        model = GaussianVAE(cloud, model_spec(cfg, cloud, image_std))
        if cfg.load:
            src = read_checkpoint(resolve_weights(cfg.load))
            try:
                model.load_state_dict(src["model"])
            except RuntimeError as exc:
                first = str(exc).splitlines()[0]
                raise InputError(f"--load {cfg.load}: weights do not fit this model ({first})") from None
            log.info("initialised weights from %s", cfg.load)
        if main_rank:
            root.mkdir(parents=True, exist_ok=True)
            cloud.to_ply(root / BASE_PLY)
            if resume:
                _trim_log(root / LOG, 0)
    if main_rank:
        cfg.write(root)
    model.set_base_trainable(cfg.train_base)
    model.to(device)
    if world_size > 1:
        from gaussianem.training.distributed import convert_batchnorm

        model = convert_batchnorm(model, device)
    g1, g2, rep_d = build_graphs(model.base_cloud, cfg, device)
    counts = L.knn_counts(ds.n, cfg.knn_sample, cfg.knn_near, cfg.knn_far)
    objective = TrainingObjective(model, LossWeights.from_config(cfg), g1, g2, rep_d, cfg.amp, counts).to(device)
    wrapped: nn.Module = objective
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda" or None)
    sampler = ResumableBatchSampler(ds.n, cfg.batch_size, cfg.seed, rank=rank, world_size=world_size)
    steps_per_epoch = sampler.batches_per_epoch()
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / max(total_steps, 1))))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    stepper = Stepper(wrapped, opt, sched, ds.n, cfg.zdim, device, cfg.seed, cfg.batch_size, rank, world_size,
                      cfg.compile, cfg.cudagraphs, amplitude_start_epoch=cfg.amplitude_start_epoch,
                      autotune=cfg.autotune, step_graph=cfg.step_graph)
    first_epoch = 1
    if ckpt is not None:
        stepper.load_state(ckpt["trainer"])
        set_rng_state(ckpt["rng"])
        first_epoch = int(ckpt["epoch"]) + 1
        if main_rank:
            _trim_log(root / LOG, int(ckpt["epoch"]))
        log.info("resuming %s after epoch %d (step %d)", root, ckpt["epoch"], stepper.step_count)
    del ckpt
    data = ParticleBatchDataset(cfg.dataset, ds)
    resident = None
    if want_resident(cfg.preload, data, device):
        resident = ResidentParticles(data, device, progress=cfg.progress and main_rank)
        log.info("particles held in %s memory (%.2f GiB): batches are gathered there", device.type,
                 ResidentParticles.nbytes(data) / 2**30)
    log.info("training on %s: %d particles, %d Gaussians, box %d, batch %d, %d epochs, lr %g",
             device, ds.n, model.n_gaussians, ds.box_size, cfg.batch_size * world_size, cfg.epochs, cfg.lr)
    log_file = open(root / LOG, "a", buffering=1) if main_rank else None  # line-buffered: `tail -f` works
    _log_record(log_file, {"type": "setup", "epoch": first_epoch - 1,
                           "seconds": round(time.perf_counter() - t_start, 3)})
    # the projection's float32 products on TF32 tensor cores or not, as the run asks (restored after)
    with tf32_matmuls(cfg.tf32 and device.type == "cuda"):
        try:
            for epoch in range(first_epoch, cfg.epochs + 1):
                _train_epoch(cfg, epoch, stepper, sampler, data, device, log_file, main_rank, resident)
                t_eval = time.perf_counter()
                mu, lv = evaluate_latents(model, data, cfg.eval_batch_size, device, cfg.num_workers, cfg.amp,
                                          cfg.progress and main_rank, rank, world_size, resident)
                if not _all_finite(model):
                    raise TrainingError(f"the model holds non-finite weights after epoch {epoch}; "
                                        "no checkpoint written")
                t_save = time.perf_counter()
                if main_rank:
                    save_npy_atomic(root / f"z.{epoch}.npy", mu)
                    save_npy_atomic(root / f"z_logvar.{epoch}.npy", lv)
                    save_checkpoint(weights_path(root, epoch), {
                        "epoch": epoch, "spec": model.spec.to_dict(), "model": model.state_dict(),
                        "trainer": stepper.state(), "sampler": {"epoch": epoch + 1, "position": 0},
                        "rng": rng_state(), "config": cfg.to_dict()})
                    if cfg.train_base:
                        model.base_cloud.to_ply(root / BASE_PLY)
                    log_file.flush()
                    t_plot = time.perf_counter()
                    plot_losses(root / LOG, root / "loss.png")
                    # where an epoch's time outside its steps goes: latents, checkpoint, loss plot
                    _log_record(log_file, {"type": "epoch_outputs", "epoch": epoch,
                                           "evaluate_s": round(t_save - t_eval, 3),
                                           "save_s": round(t_plot - t_save, 3),
                                           "plot_s": round(time.perf_counter() - t_plot, 3)})
                if on_epoch_end is not None:
                    on_epoch_end(epoch)
                if stop_after_epoch is not None and epoch >= stop_after_epoch:
                    break
        except torch.cuda.OutOfMemoryError as exc:
            raise TrainingError(_oom_message(cfg)) from exc
        finally:
            if log_file is not None:
                log_file.close()
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return root


def _log_record(log_file, record: dict) -> None:
    """One JSON line in the run's log.jsonl (nothing on ranks that do not write it)."""
    if log_file is not None:
        log_file.write(json.dumps(record) + "\n")


def _train_epoch(cfg: TrainConfig, epoch: int, stepper: Stepper, sampler: ResumableBatchSampler,
                 data: ParticleBatchDataset, device: torch.device, log_file, main_rank: bool,
                 resident: ResidentParticles | None = None) -> None:
    sampler.epoch, sampler.position = epoch, 0
    stepper.epoch = epoch
    knn_active = cfg.knn_weight > 0 and epoch > cfg.knn_start_epoch
    if knn_active:
        stepper.refresh_bank()
    stepper.objective.train()
    loader = batch_source(data, sampler, cfg.num_workers, device, resident)
    sums = np.zeros(1 + len(LOSS_TERMS))
    n_seen = 0
    wait0 = stepper.host_wait_s
    t0 = time.perf_counter()
    bar = tqdm(loader, total=len(sampler), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch",
               disable=not (cfg.progress and main_rank), dynamic_ncols=True)

    def record(results: list[StepResult]) -> None:
        nonlocal n_seen, sums
        for r in results:
            n_seen += r.batch
            sums += np.asarray(r.values) * r.batch
            _log_record(log_file, {"type": "step", "epoch": r.epoch, "step": r.step, "batch": r.batch,
                                   **dict(zip(("loss",) + LOSS_TERMS, r.values, strict=True))})
        if results:
            v = results[-1].values
            rate = n_seen / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{v[0]:.4f}", render=f"{v[1]:.4f}", kl=f"{v[2]:.2f}", pps=f"{rate:.0f}",
                            refresh=False)

    for batch in bar:
        record(stepper.step(batch, knn_active))
    record(stepper.flush())
    elapsed = time.perf_counter() - t0
    means = sums / max(n_seen, 1)
    rec = {"type": "epoch", "epoch": epoch, "step": stepper.step_count, "particles": n_seen,
           "seconds": round(elapsed, 3), "particles_per_s": round(n_seen / max(elapsed, 1e-9), 1),
           "host_wait_s": round(stepper.host_wait_s - wait0, 3),
           **dict(zip(("loss",) + LOSS_TERMS, means.tolist(), strict=True))}
    _log_record(log_file, rec)
    if main_rank:
        log.info("epoch %d: loss %.5f render %.5f kl %.3f knn %.3f (%.0f particles/s)", epoch, means[0], means[1],
                 means[2], means[3], rec["particles_per_s"])


def clear_run(rundir: Path) -> None:
    """Remove a run folder entirely (tests and benchmarks)."""
    shutil.rmtree(rundir, ignore_errors=True)
