"""The heterogeneity VAE: image encoder + Gaussian encoder + decoder over a base Gaussian cloud.

The decoder is the pair MLP (``spec.decoder == "pair"``) or the control-point decoder (``"control"``:
:mod:`gaussianem.model.control_decoder`, its control graph computed once from the base cloud's positions and saved
as buffers); the projector the dense separable one or the tile splat (``spec.projector``:
:mod:`gaussianem.physics.splat`).

Particle model for latent z: ``amplitude = softplus(base_raw + Δa)``, ``position = base + s·Δp`` (Å, s =
``position_scale_angstrom``), ``width = base`` (or ``sigmoid``-bounded ``base_raw + Δw`` when widths are
predicted). Images are windowed (soft circular mask) and divided by the dataset's ``image_std`` before they reach
the encoder; renders are divided by the same number, so the render loss compares like with like.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaussianem.gaussians import GaussianCloud, changed_amplitude, width_activation
from gaussianem.model.control_decoder import ControlGraph, ControlPointDecoder, build_control_graph
from gaussianem.model.decoder import Decoder
from gaussianem.model.gaussian_encoder import GaussianEncoder
from gaussianem.model.image_encoder import ImageEncoder
from gaussianem.model.spec import ModelSpec, resolve_decoder, resolve_encoder_box
from gaussianem.physics.ctf import CTFParams, ctf_values
from gaussianem.physics.forward import render_images
from gaussianem.physics.fourier import (
    fourier_coefficients,
    rfft2_disc_index,
    rfft2_frequencies,
    shift_images,
    soft_circular_mask,
)
from gaussianem.physics.projection import project_gaussians
from gaussianem.physics.splat import project_gaussians_splat, splat_kernel_usable


class GaussianVAE(nn.Module):
    """Two encoders, one decoder. ``base_cloud`` holds the base Gaussians (frozen unless trained)."""

    def __init__(self, cloud: GaussianCloud, spec: ModelSpec, control_graph: ControlGraph | None = None) -> None:
        super().__init__()
        if cloud.n != spec.n_gaussians:
            raise ValueError(f"the cloud has {cloud.n} Gaussians, the spec says {spec.n_gaussians}")
        errors = spec.option_errors()
        if errors:
            raise ValueError("; ".join(errors))
        if spec.decoder == "auto":  # a spec holds the decoder it built ("auto" resolved by the cloud's size)
            spec = dataclasses.replace(spec, decoder=resolve_decoder(spec.decoder, cloud.n, spec.n_control_points))
        d = spec.box_size
        # a spec holds the encoder box it built (automatic: resolved by the box)
        spec = dataclasses.replace(spec, encoder_box=resolve_encoder_box(spec.encoder_box, d))
        self.spec = spec
        self.base_cloud = cloud
        n_inputs = spec.encoder_box**2
        if spec.encoder_input == "fourier":
            index = rfft2_disc_index(spec.encoder_box, spec.encoder_fourier_radius)
            n_inputs = 2 * index.numel()
        else:
            index = torch.zeros(0, dtype=torch.long)
        self.register_buffer("encoder_index", index, persistent=False)
        self.image_encoder = ImageEncoder(n_inputs, spec.zdim, spec.encoder_hidden, spec.encoder_layers,
                                          spec.displacement_dims if spec.encoder_split else 0,
                                          spec.amplitude_encoder_hidden)
        self.gaussian_encoder = GaussianEncoder(spec.gaussian_hidden, spec.gaussian_layers, spec.embedding_dim)
        self.decoder = self._make_decoder(cloud, spec, control_graph)
        self.register_buffer("window", soft_circular_mask(d, spec.window_radius, spec.window_edge), persistent=False)
        fy, fx = rfft2_frequencies(d, spec.pixel_size_angstrom)
        self.register_buffer("freq_y", fy.contiguous(), persistent=False)
        self.register_buffer("freq_x", fx.contiguous(), persistent=False)
        with torch.no_grad():
            amp = cloud.amplitudes
            scale = amp.mean() if amp.numel() else torch.tensor(1.0)
        # feature normalisation of the Gaussian encoder's inputs, fixed at construction (saved with the weights)
        self.register_buffer("amplitude_scale", scale.detach().clone().clamp_min(1e-12).reshape(()))

    @staticmethod
    def _make_decoder(cloud: GaussianCloud, spec: ModelSpec, graph: ControlGraph | None) -> nn.Module:
        sizes = (spec.embedding_dim, spec.decoder_hidden, spec.decoder_layers, spec.decoder_features,
                 spec.predict_width)
        if spec.decoder == "pair":
            if spec.displacement_dims or spec.readout_control:
                raise ValueError("displacement_dims and readout_control need the control-point decoder "
                                 "(decoder='control')")
            return Decoder(spec.zdim, *sizes, combine=spec.decoder_combine)
        if graph is None:
            graph = build_control_graph(cloud.positions.detach().cpu(), spec.n_control_points,
                                        spec.control_neighbours, seed=0)
        return ControlPointDecoder(spec.zdim, graph, *sizes, rank=spec.readout_rank, embed_on=spec.control_embedding,
                                   combine=spec.decoder_combine, displacement_dims=spec.displacement_dims,
                                   readout_control=spec.readout_control, readout_zero=spec.readout_zero)

    # ---- properties -------------------------------------------------------------------------------------------
    @property
    def zdim(self) -> int:
        return self.spec.zdim

    @property
    def box_size(self) -> int:
        return self.spec.box_size

    @property
    def n_gaussians(self) -> int:
        return self.spec.n_gaussians

    def set_base_trainable(self, trainable: bool) -> None:
        for p in self.base_cloud.parameters():
            p.requires_grad_(trainable)

    # ---- encoder side -----------------------------------------------------------------------------------------
    def preprocess(self, images: Tensor) -> Tensor:
        """Raw dataset images (B, D, D) -> windowed, normalised images (B, D, D) float32."""
        return images.float() * (self.window / self.spec.image_std)

    def encode_preprocessed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Windowed normalised images (B, D, D) -> mu (B, zdim), logvar (B, zdim) (in the autocast dtype); the
        images are area-averaged to ``spec.encoder_box`` first when that is smaller than D, then, with
        ``spec.encoder_input == "fourier"``, turned into their low-pass Fourier coefficients (float32 FFT)."""
        e = self.spec.encoder_box
        if e < x.shape[-1]:
            x = F.adaptive_avg_pool2d(x[:, None], e)[:, 0]
        if self.spec.encoder_input == "fourier":
            with torch.autocast(x.device.type, enabled=False):
                flat = fourier_coefficients(x.float(), self.encoder_index)
        else:
            flat = x.reshape(x.shape[0], -1)
        return self.image_encoder(flat)

    def encoder_input(self, images: Tensor, shifts_angstrom: Tensor | None) -> Tensor:
        """Raw dataset images (B, D, D) -> the image encoder's windowed normalised input (B, D, D) float32: with
        ``spec.encoder_centre`` each image translated by its shift (B, 2) Å, which puts the particle's centre
        (projected at −shift) on the box centre."""
        if self.spec.encoder_centre:
            if shifts_angstrom is None:
                raise ValueError("this model centres its encoder's input: the images' shifts are needed")
            images = shift_images(images.float(), shifts_angstrom.float(), self.spec.pixel_size_angstrom)
        return self.preprocess(images)

    def encode(self, images: Tensor, shifts_angstrom: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Raw dataset images (B, D, D) and their shifts (B, 2) Å (needed with ``spec.encoder_centre``) -> mu (B,
        zdim), logvar (B, zdim) float32."""
        mu, logvar = self.encode_preprocessed(self.encoder_input(images, shifts_angstrom))
        return mu.float(), logvar.float()

    # ---- Gaussian side ----------------------------------------------------------------------------------------
    def gaussian_features(self) -> Tensor:
        """The base attributes of every Gaussian, normalised: (G, 5) = [amplitude, width, x, y, z]."""
        pos, wid, amp = self.base_cloud.physical()
        half = 0.5 * self.spec.box_size * self.spec.pixel_size_angstrom
        return torch.cat([(amp / self.amplitude_scale)[:, None], (wid / self.base_cloud.width_max)[:, None],
                          pos / half], dim=1)

    @property
    def embeds_control_points(self) -> bool:
        """Whether :meth:`embed` gives one row per control point (the control-point decoder with
        ``spec.control_embedding == "control"``) rather than one per Gaussian."""
        return isinstance(self.decoder, ControlPointDecoder) and self.decoder.embed_on == "control"

    def embed(self) -> Tensor:
        """The decoder's embeddings, computed once per step and shared by all particles: (G, embedding_dim), one
        per Gaussian, or (K, embedding_dim), one per control point, from their pooled base features (float32
        pooling, so it is the same under autocast)."""
        features = self.gaussian_features()
        if self.embeds_control_points:
            with torch.autocast(features.device.type, enabled=False):
                features = self.decoder.pool_rows(features.float(), dense=False)
        return self.gaussian_encoder(features)

    def decode_deltas(self, z: Tensor, embedding: Tensor | None = None) -> Tensor:
        """z (B, zdim) -> raw decoder outputs (B, G, 4|5) float32 (Δamp, Δposition in Å, (Δwidth))."""
        if embedding is None:
            embedding = self.embed()
        return self._scaled(self.decoder(z, embedding))

    def decode_deltas_and_control(self, z: Tensor, embedding: Tensor) -> tuple[Tensor, Tensor | None]:
        """:meth:`decode_deltas` and, with the control-point decoder, the control points' outputs (B, K, 4|5) in
        the same units (None with the pair decoder)."""
        if isinstance(self.decoder, ControlPointDecoder):
            out, control = self.decoder.forward_with_control(z, embedding)
            return self._scaled(out), self._scaled(control)
        return self.decode_deltas(z, embedding), None

    def _scaled(self, out: Tensor) -> Tensor:
        """Raw head outputs (..., 4|5) -> float32 with positions in Å."""
        out = out.float()
        scale = torch.ones(out.shape[-1], device=out.device, dtype=out.dtype)
        scale[1:4] = self.spec.position_scale_angstrom
        return out * scale

    def apply_deltas(self, deltas: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Raw outputs (B, G, 4|5) -> positions (B, G, 3) Å, widths (B, G) Å, amplitudes (B, G), float32."""
        cloud = self.base_cloud
        positions = cloud.positions.float()[None] + deltas[..., 1:4]
        amplitudes = changed_amplitude(cloud.amplitude_raw.float()[None], deltas[..., 0], self.spec.amplitude_change)
        if self.spec.predict_width:
            widths = width_activation(cloud.width_raw.float()[None] + deltas[..., 4], cloud.width_min,
                                      cloud.width_max)
        else:
            widths = cloud.widths.float()[None].expand(deltas.shape[0], -1)
        return positions, widths, amplitudes

    def decode(self, z: Tensor, embedding: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """z (B, zdim) -> each latent's cloud: positions (B, G, 3) Å, widths (B, G) Å, amplitudes (B, G)."""
        return self.apply_deltas(self.decode_deltas(z, embedding))

    # ---- image formation --------------------------------------------------------------------------------------
    def ctf(self, params: CTFParams) -> Tensor:
        """CTF on the rfft2 grid for a batch of parameters (each (B,)) -> (B, D, D//2+1) float32."""
        return ctf_values(self.freq_y, self.freq_x, *params)

    def render(self, positions: Tensor, widths: Tensor, amplitudes: Tensor, rotations: Tensor,
               shifts_angstrom: Tensor | None, ctf_params: CTFParams | None) -> Tensor:
        """Per-image clouds (B, G, ·) with poses (B, 3, 3), (B, 2) and CTF -> normalised images (B, D, D) float32.

        One batched projection call for the whole batch, then the CTF in Fourier space; float32 throughout.
        """
        with torch.autocast(positions.device.type, enabled=False):
            img = render_images(positions.float(), widths.float(), amplitudes.float(), rotations.float(),
                                None if shifts_angstrom is None else shifts_angstrom.float(), ctf_params,
                                self.spec.box_size, self.spec.pixel_size_angstrom, self.spec.projection_chunk,
                                frequencies=(self.freq_y, self.freq_x), projector=self.projector(positions))
        return img / self.spec.image_std

    def projector(self, positions: Tensor):
        """The projection function for clouds like ``positions`` (``spec.projector``; the splat's static binning
        bounds the widths by the cloud's ``width_max``, so the step stays capturable in a CUDA graph)."""
        spec = self.spec
        use_splat = spec.projector == "splat" or (spec.projector == "auto" and splat_kernel_usable(positions))
        if not use_splat:
            return project_gaussians
        use_kernel = None if spec.projector == "auto" or positions.device.type != "cuda" else True
        return functools.partial(project_gaussians_splat, cutoff_sigmas=spec.splat_cutoff_sigmas,
                                 use_kernel=use_kernel, max_sigma_angstrom=spec.width_max)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> GaussianVAE:
        """An empty model of the right shapes (load a state dict into it): the base cloud is a placeholder."""
        g = spec.n_gaussians
        spec = dataclasses.replace(spec, decoder=resolve_decoder(spec.decoder, g, spec.n_control_points))
        mid = 0.5 * (spec.width_min + spec.width_max)
        cloud = GaussianCloud(torch.zeros(g, 3), torch.full((g,), mid), torch.ones(g), spec.width_min,
                              spec.width_max)
        graph = None
        if spec.decoder == "control":  # placeholder of the saved graph's shapes (the state dict fills it)
            k_ctl = max(1, min(spec.n_control_points, g))
            k_nb = min(spec.control_neighbours, k_ctl)
            graph = ControlGraph(torch.zeros(k_ctl, 3), torch.zeros(g, k_nb, dtype=torch.long),
                                 torch.full((g, k_nb), 1.0 / k_nb), 1.0)
        return cls(cloud, spec, graph)
