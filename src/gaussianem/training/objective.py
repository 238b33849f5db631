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

from gaussianem.errors import InputError
from gaussianem.gaussians import GaussianCloud, amplitude_log_gain
from gaussianem.model import losses as L
from gaussianem.model.spec import ModelOptions, ModelSpec, resolve_decoder
from gaussianem.model.vae import GaussianVAE
from gaussianem.physics.ctf import CTFParams
from gaussianem.physics.fourier import gaussian_lowpass_rfft2
from gaussianem.training.config import TrainConfig

log = logging.getLogger(__name__)

LOSS_TERMS = ("render", "kl", "knn", "smoothness", "distance", "alignment", "repulsion", "amplitude",
              "amplitude_gain", "kl_amplitude")
# kl_amplitude: the part of the KL term on the latent split's amplitude dimensions, the last zdim - N (with
# --encoder-split the amplitude encoder's; the same dimensions after the split opens; 0 without a split). Logged
# only (weight 0; it is already in "kl"): it tells which part of the latent takes in the information.


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
    render_loss: str = "l2"  # the render term's norm: "l2" or "l1"
    kl_displacement_scale: float = 1.0  # the split's displacement dimensions' KL weight: this multiple of kl

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> LossWeights:
        return cls(cfg.kl_weight, cfg.knn_weight, cfg.smoothness_weight, cfg.distance_weight,
                   cfg.alignment_weight, cfg.repulsion_weight, cfg.amplitude_weight,
                   cfg.amplitude_gain_weight, cfg.render_loss, cfg.kl_displacement_scale)

    def as_tensor(self, device) -> Tensor:
        return torch.tensor([1.0, self.kl, self.knn, self.smoothness, self.distance, self.alignment,
                             self.repulsion, self.amplitude, self.amplitude_gain, 0.0], device=device)


def model_spec(cfg: TrainConfig, cloud: GaussianCloud, image_std: float) -> ModelSpec:
    """The spec of a new model: the run's :class:`ModelOptions` fields, the dataset's geometry and the cloud."""
    options = {f.name: getattr(cfg, f.name) for f in fields(ModelOptions)}
    decoder = resolve_decoder(cfg.decoder, cloud.n, cfg.n_control_points)
    asked = [name for name, on in (("--displacement-dims", cfg.displacement_dims),
                                   ("--readout-control", cfg.readout_control)) if on]
    if asked and (decoder != "control" or cfg.readout_rank < 1):
        verb = "needs" if len(asked) == 1 else "need"
        raise InputError(f"{' and '.join(asked)} {verb} the control-point decoder with an amplitude read-out "
                         f"(--decoder control, --readout-rank >= 1); this cloud of {cloud.n:,} Gaussians got "
                         f"--decoder {decoder}, --readout-rank {cfg.readout_rank}")
    if cfg.encoder_split and not cfg.displacement_dims:
        raise InputError("--encoder-split gives each part of the latent split its own image encoder: it needs the "
                         "split (--displacement-dims N, not 0)")
    if cfg.amplitude_encoder_hidden and not cfg.encoder_split:
        raise InputError("--amplitude-encoder-hidden sizes the amplitude part's own image encoder: it needs "
                         "--encoder-split")
    if cfg.amplitude_encoder_freeze_steps and not cfg.encoder_split:
        raise InputError("--amplitude-encoder-freeze-steps stops the amplitude part's own image encoder: it needs "
                         "--encoder-split")
    return ModelSpec(box_size=int(cfg.box_size), pixel_size_angstrom=float(cfg.pixel_size_angstrom),
                     n_gaussians=cloud.n, width_min=cloud.width_min, width_max=cloud.width_max,
                     image_std=float(image_std), **options)


@dataclass
class RegulariserGraphs:
    """The radius graphs of the geometric regularisers and where they are evaluated.

    ``smooth`` is on the Gaussians (the embedding smoothness, once per step). ``distance`` and ``wide`` (alignment,
    repulsion) are on the Gaussians, or with ``on_control`` on the control points of the control-point decoder,
    whose displacements every Gaussian's are convex combinations of: (B, K) instead of (B, G) edge work per step.
    ``scale`` multiplies the distance and alignment terms (Å², growing with the square of the edge length under a
    given strain or turn): the ratio of the two graphs' weighted mean squared edge lengths, so that a uniform
    strain costs the same on either points and a weight means the same.
    """

    smooth: L.RadiusGraph
    distance: L.RadiusGraph
    wide: L.RadiusGraph
    repulsion_distance: float
    on_control: bool = False
    scale: float = 1.0


class TrainingObjective(nn.Module):
    """The VAE plus its losses: ``forward`` returns (total loss, unweighted terms (7,), mu (B, zdim)).

    This is the module wrapped by DistributedDataParallel; graphs are fixed tensors of the base cloud.
    """

    def __init__(self, model: GaussianVAE, weights: LossWeights, graphs: RegulariserGraphs, amp: bool,
                 knn_counts: tuple[int, int, int]) -> None:
        super().__init__()
        self.model = model
        self.weights = weights
        self.graphs = graphs
        self.amp = amp
        self.knn_counts = knn_counts
        self.register_buffer("weight_vector", weights.as_tensor("cpu"), persistent=False)

    def forward(self, images: Tensor, rotations: Tensor, shifts: Tensor, ctf: Tensor | None, eps: Tensor,
                knn_cand: Tensor | None = None, knn_pick: Tensor | None = None,
                knn_uniform: Tensor | None = None, knn_on: Tensor | None = None,
                amplitude_on: Tensor | None = None,
                blur_var: Tensor | None = None, kl_scale: Tensor | None = None,
                kl_displacement: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """images (B, D, D) raw; rotations (B, 3, 3); shifts (B, 2) Å; ctf (B, 7) or None; eps (B, zdim);
        knn_* the kNN loss's drawn samples (:class:`losses.KnnSamples`; None: kNN loss inactive); knn_on () 1 or
        0 multiplies the kNN term (0 with placeholder samples: one compiled graph whether the loss is on or off);
        amplitude_on () 1 or 0 multiplies the decoded amplitude changes (0: the particle's cloud differs from the
        base only by its displacements; a tensor, so that switching it does not compile a second graph); blur_var
        () the variance (Å²) of a Gaussian low-pass of the render residual (None: the plain render term; see
        :func:`losses.render_lowpass`: a tensor, so that its schedule does not compile a second graph); kl_scale ()
        multiplies the KL term's weight (the KL schedule of ``--kl-start-weight``; None: 1); kl_displacement () the
        latent split's displacement dimensions' KL scale at this step (``--kl-displacement-scale-start-steps``'s
        schedule; None: ``weights.kl_displacement_scale``).

        A pure function of its tensor arguments (every random draw is made by the caller), with fixed shapes for
        a fixed batch size, so that on CUDA the whole forward and backward can be captured as CUDA graphs."""
        model = self.model
        dev = images.device
        use_amp = self.amp and dev.type == "cuda"
        x = model.preprocess(images)
        x_enc = model.encoder_input(images, shifts) if model.spec.encoder_centre else x
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            mu, logvar = model.encode_preprocessed(x_enc)
            mu, logvar = mu.float(), logvar.float()
            z = mu + torch.exp(0.5 * logvar) * eps
            embedding = model.embed()
            deltas, control = model.decode_deltas_and_control(z, embedding)
        if amplitude_on is not None:
            deltas = torch.cat([deltas[..., :1] * amplitude_on, deltas[..., 1:]], dim=-1)
        positions, widths, amplitudes = model.apply_deltas(deltas)
        rendered = model.render(positions, widths, amplitudes, rotations, shifts,
                                None if ctf is None else CTFParams.from_packed(ctf))
        zero = x.new_zeros(())
        if blur_var is None:
            render = (L.render_l2 if self.weights.render_loss == "l2" else L.render_l1)(rendered, x, model.window)
        else:
            filt = gaussian_lowpass_rfft2(model.freq_y, model.freq_x, blur_var)
            render = L.render_lowpass(rendered, x, model.window, filt, self.weights.render_loss)
        kl_dims = L.kl_per_dimension(mu, logvar)  # (B, zdim), once for the KL and its amplitude part
        kl = kl_dims.sum(-1).mean()
        n_disp = model.spec.displacement_dims
        kl_amp = kl_dims[:, n_disp:].sum(-1).mean() if n_disp else zero
        knn = zero
        if knn_cand is not None:
            knn = L.knn_loss_from_samples(mu, L.KnnSamples(knn_cand, knn_pick, knn_uniform), self.knn_counts[1])
            if knn_on is not None:
                knn = knn * knn_on
        w, gr = self.weights, self.graphs
        moved, points = deltas[..., 1:4], positions
        if gr.on_control:
            moved = control[..., 1:4]
            points = model.decoder.control_positions[None] + moved
        smooth = L.smoothness_loss(embedding, gr.smooth) if w.smoothness else zero
        dist = L.distance_loss(points, gr.distance) * gr.scale if w.distance else zero
        align = L.alignment_loss(moved, gr.wide) * gr.scale if w.alignment else zero
        rep = L.repulsion_loss(points, gr.wide, gr.repulsion_distance) if w.repulsion else zero
        amp_change = L.amplitude_change_loss(deltas[..., 0]) if w.amplitude else zero
        amp_gain = (L.amplitude_change_loss(amplitude_log_gain(deltas[..., 0], model.spec.amplitude_change))
                    if w.amplitude_gain else zero)
        terms = torch.stack([render, kl, knn, smooth, dist, align, rep, amp_change, amp_gain, kl_amp])
        total = (terms * self.weight_vector).sum()
        # the logged KL stays the plain one; in the total its weight follows the schedule, and the displacement
        # dimensions' part (kl - kl_amp) is weighed by kl_displacement_scale (or this step's scale, when given)
        s = w.kl_displacement_scale if kl_displacement is None else kl_displacement
        if kl_scale is not None or (n_disp and (kl_displacement is not None or s != 1.0)):
            weighed = kl + (s - 1.0) * (kl - kl_amp) if n_disp else kl
            factor = 1.0 if kl_scale is None else kl_scale
            total = total + self.weight_vector[LOSS_TERMS.index("kl")] * (factor * weighed - kl)
        return total, terms, mu


def build_graphs(model: GaussianVAE, cfg: TrainConfig, device) -> RegulariserGraphs:
    """The regularisers' radius graphs for ``model`` (``cfg.regularise_on``: "auto" is "control" with the
    control-point decoder, "gaussians" otherwise). The smoothness graph joins the points the model embeds: the
    Gaussians, or the control points (:attr:`GaussianVAE.embeds_control_points`)."""
    pos = model.base_cloud.positions.detach().cpu().double().numpy()
    mean_nn = L.mean_nearest_neighbour_distance(pos)
    on_gaussians = L.radius_graph(pos, cfg.graph_radius, mean_nn, device)
    on_control = regularise_on_control(cfg.regularise_on, model.spec.decoder)
    points, point_nn, distance = pos, mean_nn, on_gaussians
    if on_control or model.embeds_control_points:
        points = model.decoder.control_positions.detach().cpu().double().numpy()
        point_nn = L.mean_nearest_neighbour_distance(points)
        distance = L.radius_graph(points, cfg.graph_radius, point_nn, device)
    smooth = distance if model.embeds_control_points else on_gaussians
    if not on_control:
        points, point_nn, distance = pos, mean_nn, on_gaussians
    wide = L.radius_graph(points, cfg.alignment_radius, point_nn, device)
    where = f"{len(points)} control points" if on_control else f"{len(points)} Gaussians"
    log.info("regulariser graphs on %s: %d edges (r = %.2f Å), %d edges (r = %.2f Å); smoothness graph %d edges; "
             "mean NN distance %.2f Å", where, distance.n_edges, cfg.graph_radius * point_nn, wide.n_edges,
             cfg.alignment_radius * point_nn, smooth.n_edges, mean_nn)
    scale = _mean_square_edge(on_gaussians) / _mean_square_edge(distance) if on_control else 1.0
    return RegulariserGraphs(smooth, distance, wide, cfg.repulsion_fraction * point_nn, on_control, scale)


def _mean_square_edge(graph: L.RadiusGraph) -> float:
    """Weighted mean squared rest length (Å²) of a graph's edges: a uniform strain ε costs ε² times this in the
    distance term (1.0 for a graph without edges)."""
    if graph.n_edges == 0:
        return 1.0
    w = graph.weight.double()
    return float((w * graph.rest_length.double() ** 2).sum() / w.sum())


def regularise_on_control(choice: str, decoder: str) -> bool:
    """Whether the geometric regularisers run on the control points (``--regularise-on``)."""
    if choice == "control" and decoder != "control":
        raise ValueError("--regularise-on control needs --decoder control (or auto on a cloud larger than "
                         "--n-control-points)")
    return choice == "control" or (choice == "auto" and decoder == "control")
