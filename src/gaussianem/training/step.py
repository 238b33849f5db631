"""One training step of the heterogeneity VAE, and its CUDA graphs (:class:`Stepper`).

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
import logging
import math
import time
import traceback
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import Tensor, nn

from gaussianem.model import losses as L
from gaussianem.training.objective import LOSS_TERMS, NonFiniteLossError

log = logging.getLogger(__name__)


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


def blur_sigma(step: int, start_angstrom: float, steps: int) -> float:
    """The residual low-pass's width (Å) at optimizer step ``step`` (0-based): ``start_angstrom`` at step 0,
    falling linearly to 0 at ``steps`` and 0 after (coarse to fine; 0 throughout when ``steps`` <= 0)."""
    if steps <= 0 or step >= steps:
        return 0.0
    return start_angstrom * (1.0 - step / steps)


def amplitude_factor(step: int, start_steps: int, ramp_steps: int) -> float:
    """The factor on the decoded amplitude changes at optimizer step ``step`` (0-based) once the amplitude gate is
    open: 0 before ``start_steps``, then rising linearly to 1 over ``ramp_steps`` steps (1 at once when 0)."""
    if step < start_steps:
        return 0.0
    if ramp_steps <= 0:
        return 1.0
    return min(1.0, (step - start_steps + 1) / ramp_steps)


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
                 autotune: bool = False, step_graph: bool | None = None, amplitude_start_steps: int = 0,
                 blur_start_angstrom: float = 0.0, blur_steps: int = 0,
                 kl_scale: Callable[[int], float] | None = None, amplitude_ramp_steps: int = 0,
                 kl_displacement: Callable[[int], float] | None = None,
                 open_split: tuple[int, Callable[[], None]] | None = None) -> None:
        self.objective = objective
        self.open_split = open_split  # (S, action): the action runs once, when S steps have run (before step S + 1)
        self.amplitude_ramp_steps = int(amplitude_ramp_steps)
        self.kl_scale = kl_scale  # step -> the KL weight's factor (None: 1 throughout)
        self.kl_displacement = kl_displacement  # step -> the displacement dimensions' KL scale (None: constant)
        self.blur_start_angstrom = float(blur_start_angstrom)
        self.blur_steps = int(blur_steps)
        self.amplitude_start_epoch = int(amplitude_start_epoch)
        self.amplitude_start_steps = int(amplitude_start_steps)
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
        self._amp_ramp = torch.zeros((), device=device)  # refilled each step with --amplitude-ramp-steps
        # the residual low-pass's variance (Å²), refilled each step (None: no low-pass, the plain render term)
        self._blur = torch.zeros((), device=device) if self.blur_start_angstrom > 0 else None
        self._kl = torch.ones((), device=device) if kl_scale is not None else None
        self._kld = torch.ones((), device=device) if kl_displacement is not None else None
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
        if self.open_split is not None and self.step_count >= self.open_split[0]:
            self.open_split[1]()  # in place (a buffer, weights), on this stream: a captured step graph reads them
            self.open_split = None
        amplitudes = self.epoch > self.amplitude_start_epoch and self.step_count >= self.amplitude_start_steps
        amp_on = self._amp_one if amplitudes else self._amp_zero
        if self.amplitude_ramp_steps > 0:
            self._amp_ramp.fill_(amplitude_factor(self.step_count, self.amplitude_start_steps,
                                                  self.amplitude_ramp_steps) if amplitudes else 0.0)
            amp_on = self._amp_ramp
        if self._blur is not None:
            self._blur.fill_(blur_sigma(self.step_count, self.blur_start_angstrom, self.blur_steps) ** 2)
        if self._kl is not None:
            self._kl.fill_(self.kl_scale(self.step_count))
        if self._kld is not None:
            self._kld.fill_(self.kl_displacement(self.step_count))
        args = (images, rotations, shifts, ctf, eps, *knn, amp_on, self._blur, self._kl, self._kld)
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
        *tensors, amp_on, blur, kl, kld = args
        if self.cudagraphs and not self.step_graph:
            torch.compiler.cudagraph_mark_step_begin()
        total, terms, mu = self.forward(*tensors, amplitude_on=amp_on, blur_var=blur, kl_scale=kl,
                                        kl_displacement=kld)
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

