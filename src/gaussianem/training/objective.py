"""The training objective of the heterogeneity VAE: the model plus its weighted losses, and the errors of a run.

:class:`TrainingObjective` is the VAE plus its losses as one module: render L1 + weighted KL, the latent kNN
loss, the geometric regularisers on radius graphs of the base cloud (:func:`build_graphs`) and the amplitude
penalties, weighted by :class:`LossWeights`. It is a pure function of fixed-shape tensors (every random draw is
made by the caller, :class:`~gaussianem.training.step.Stepper`), so on CUDA it can be compiled and captured as
CUDA graphs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor, nn

from gaussianem.gaussians import GaussianCloud
from gaussianem.model import losses as L
from gaussianem.model.spec import ModelOptions, ModelSpec
from gaussianem.model.vae import GaussianVAE
from gaussianem.physics.ctf import CTFParams
from gaussianem.training.config import TrainConfig

log = logging.getLogger(__name__)

LOSS_TERMS = ("render", "kl", "knn", "smoothness", "distance", "alignment", "repulsion", "amplitude",
              "amplitude_gain")


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
    """The spec of a new model: the run's :class:`ModelOptions` fields, the dataset's geometry and the cloud."""
    options = {f.name: getattr(cfg, f.name) for f in fields(ModelOptions)}
    return ModelSpec(box_size=int(cfg.box_size), pixel_size_angstrom=float(cfg.pixel_size_angstrom),
                     n_gaussians=cloud.n, width_min=cloud.width_min, width_max=cloud.width_max,
                     image_std=float(image_std), **options)


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

