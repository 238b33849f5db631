"""Losses of the heterogeneity VAE.

- render: L1 between windowed, normalised images and CTF-filtered renders (mean over window-weighted pixels);
- KL of the approximate posterior to N(0, I);
- latent kNN (memory bank of mu): pull the nearest sampled latents with log(1 + d²), push far ones (mixed with
  uniform points in the bank's bounding box) with log(1 + 1/d²);
- geometric regularisers on radius graphs of the base cloud (r = factor × mean nearest-neighbour distance,
  edge weights exp(1 - d/mean)): embedding smoothness, neighbour-distance preservation, displacement alignment,
  repulsion;
- amplitude penalties: mean Δa² of the decoded (pre-activation) amplitude changes, and the same of the log of
  their gains alone (``gaussians.amplitude_log_gain``; fading out stays free).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gaussianem.physics.fourier import apply_filter_rfft2, rfft2_mean_square


@dataclass
class RadiusGraph:
    """Undirected edges (src[k], dst[k]) of a radius graph with rest lengths and weights, all (E,) tensors."""

    src: Tensor
    dst: Tensor
    rest_length: Tensor
    weight: Tensor
    mean_nn: float

    @property
    def n_edges(self) -> int:
        return int(self.src.shape[0])


def mean_nearest_neighbour_distance(positions: np.ndarray) -> float:
    """Mean distance (Å) from each point (G, 3) to its nearest other point."""
    from scipy.spatial import cKDTree

    if len(positions) < 2:
        return 1.0
    d, _ = cKDTree(positions).query(positions, k=2)
    return float(np.mean(d[:, 1]))


def radius_graph(positions: np.ndarray, factor: float, mean_nn: float | None = None,
                 device=None) -> RadiusGraph:
    """Radius graph of a cloud (G, 3) Å with r = factor × mean NN distance; weights exp(1 - d / mean_nn)."""
    from scipy.spatial import cKDTree

    positions = np.asarray(positions, np.float64)
    mean_nn = mean_nearest_neighbour_distance(positions) if mean_nn is None else mean_nn
    pairs = cKDTree(positions).query_pairs(factor * mean_nn, output_type="ndarray")
    pairs = pairs.reshape(-1, 2).astype(np.int64)
    d = np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=1)
    w = np.exp(1.0 - d / mean_nn)
    t = lambda a, dt=torch.float32: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    return RadiusGraph(t(pairs[:, 0], torch.long), t(pairs[:, 1], torch.long), t(d), t(w), mean_nn)


def render_l1(rendered: Tensor, images: Tensor, window: Tensor) -> Tensor:
    """Mean window-weighted |rendered - images|: (B, D, D), (B, D, D), window (D, D) -> scalar."""
    return _window_mean((rendered - images).abs(), window)


def render_l2(rendered: Tensor, images: Tensor, window: Tensor) -> Tensor:
    """Mean window-weighted squared residual (cryoDRGN's reconstruction term): (B, D, D) ×2, window (D, D) -> scalar."""
    return _window_mean((rendered - images).square(), window)


def render_lowpass(rendered: Tensor, images: Tensor, window: Tensor, filt: Tensor, norm: str = "l2") -> Tensor:
    """The render term of a low-passed residual (the coarse-to-fine start of ``--blur-start-angstrom``).

    rendered, images (B, D, D); window (D, D); filt (D, D//2+1) a real rfft2 filter (e.g.
    :func:`~gaussianem.physics.fourier.gaussian_lowpass_rfft2`). The residual is filtered, then scored as
    :func:`render_l2` (``norm="l2"``) or :func:`render_l1`, and divided by the share of white noise's energy
    the filter keeps (its mean square over the full grid; its square root for l1), so that the term keeps its
    scale against the KL while the filter narrows: a pure-noise residual scores the same with or without it.
    """
    residual = apply_filter_rfft2(rendered - images, filt)
    kept = rfft2_mean_square(filt, images.shape[-1])
    if norm == "l2":
        return _window_mean(residual.square(), window) / kept
    return _window_mean(residual.abs(), window) / kept.sqrt()


def _window_mean(values: Tensor, window: Tensor) -> Tensor:
    """Mean of per-pixel values (B, D, D) weighted by the window (D, D), over the batch: a scalar."""
    return (values * window).sum() / (window.sum() * values.shape[0])


def kl_per_dimension(mu: Tensor, logvar: Tensor) -> Tensor:
    """mu, logvar (B, zdim) -> KL(N(mu, exp(logvar)) || N(0, 1)) of each image's each latent dimension (B, zdim)."""
    return -0.5 * (1 + logvar - mu**2 - logvar.exp())


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dimensions, averaged over the batch (scalar)."""
    return kl_per_dimension(mu, logvar).sum(-1).mean()


def knn_counts(n_bank: int, n_sample: int = 6400, n_near: int = 128, n_far: int = 640) -> tuple[int, int, int]:
    """Scale the kNN loss's sample/near/far counts down for banks smaller than ``n_sample``, keeping ratios."""
    if n_bank >= n_sample:
        return n_sample, n_near, n_far
    f = n_bank / n_sample
    return n_bank, max(1, int(round(n_near * f))), max(1, int(round(n_far * f)))


@dataclass
class KnnSamples:
    """The random draws of one kNN-loss evaluation, made outside the (compiled, graph-captured) step.

    cand (S, zdim): bank rows drawn with replacement; pick (B, n_rand) long: positions among the non-nearest
    candidates (already offset by ``n_near``); uniform (U, zdim): points uniform in the bank's bounding box.
    """

    cand: Tensor
    pick: Tensor
    uniform: Tensor


def draw_knn_samples(bank: Tensor, n_near: int, n_far: int, n_sample: int, batch: int,
                     generator: torch.Generator | None = None, batch_offset: int = 0,
                     global_batch: int | None = None) -> KnnSamples:
    """Draw the kNN loss's samples for a batch of ``batch`` latents against a memory bank (M, zdim).

    The draws are made for the global batch (``global_batch`` rows; this shard's rows start at ``batch_offset``)
    from one generator, so every data-parallel rank sees a single process's numbers. Fixed shapes for fixed
    arguments (no host synchronisation), so the loss itself can be captured in a CUDA graph.
    """
    m, zdim = bank.shape
    dev = bank.device
    n_sample = min(n_sample, m)
    sel = torch.randint(0, m, (n_sample,), device=dev, generator=generator)
    cand = bank[sel]
    n_rand = max(1, n_far // 2)
    n_unif = max(1, n_far - n_rand)
    rest = n_sample - n_near
    gb = batch if global_batch is None else global_batch
    if rest > 0:
        pick = n_near + torch.randint(0, rest, (gb, n_rand), device=dev, generator=generator)
        pick = pick[batch_offset:batch_offset + batch]
    else:
        pick = torch.zeros(batch, 0, dtype=torch.long, device=dev)
    lo, hi = bank.min(0).values, bank.max(0).values
    unif = lo + (hi - lo) * torch.rand(n_unif, zdim, device=dev, generator=generator, dtype=bank.dtype)
    return KnnSamples(cand, pick, unif)


def placeholder_knn_samples(n_near: int, n_far: int, n_sample: int, batch: int, zdim: int,
                            device=None) -> KnnSamples:
    """Samples of the shapes :func:`draw_knn_samples` gives for a bank of at least ``n_sample`` rows, filled with
    harmless constants: a compiled step passes them (with the kNN weight switched off) before the memory bank
    exists, so that switching the loss on later does not compile a second graph."""
    n_rand = max(1, n_far // 2)
    n_unif = max(1, n_far - n_rand)
    pick_cols = n_rand if n_sample > n_near else 0
    return KnnSamples(torch.zeros(n_sample, zdim, device=device),
                      torch.full((batch, pick_cols), n_near, dtype=torch.long, device=device),
                      torch.ones(n_unif, zdim, device=device))


def knn_loss_from_samples(mu: Tensor, samples: KnnSamples, n_near: int) -> Tensor:
    """Latent neighbourhood loss of mu (B, zdim) given drawn samples: the ``n_near`` nearest candidates pulled with
    log(1 + d²), the picked non-nearest candidates and the uniform points pushed with log(1 + 1/d²) -> scalar."""
    d2 = torch.cdist(mu, samples.cand).pow(2)  # (B, S)
    order = torch.argsort(d2, dim=1)
    near = torch.gather(d2, 1, order[:, :n_near])
    pull = torch.log1p(near).mean()
    far = torch.gather(d2, 1, torch.gather(order, 1, samples.pick))
    far = torch.cat([far, torch.cdist(mu, samples.uniform).pow(2)], dim=1)
    push = torch.log1p(1.0 / (far + 1e-6)).mean()
    return pull + push


def knn_latent_loss(mu: Tensor, bank: Tensor, n_near: int, n_far: int, n_sample: int,
                    generator: torch.Generator | None = None, batch_offset: int = 0,
                    global_batch: int | None = None) -> Tensor:
    """Latent neighbourhood loss against a memory bank (draws and loss in one call).

    Args:
        mu: (B, zdim) current means. bank: (M, zdim) stored means (detached; only filled rows).
        n_sample: rows drawn (with replacement) from the bank; n_near: nearest of them pulled with log(1+d²);
        n_far: pushed with log(1+1/d²), half drawn at random from the non-nearest samples, half uniform points
        in the bank's bounding box.
        batch_offset, global_batch: see :func:`draw_knn_samples`.
    Returns:
        scalar: mean pull + mean push.
    """
    samples = draw_knn_samples(bank, n_near, n_far, n_sample, mu.shape[0], generator, batch_offset, global_batch)
    return knn_loss_from_samples(mu, samples, n_near)


def _wmean(values: Tensor, weight: Tensor) -> Tensor:
    """Weighted mean over the last axis (E), then the mean over leading axes."""
    return (values * weight).sum(-1).mean() / weight.sum().clamp_min(1e-12)


def _edge_vectors(positions: Tensor, graph: RadiusGraph) -> Tensor:
    """p_i - p_j over the edges of (B, G, 3) clouds -> (B, E, 3). index_select, whose backward is an index_add,
    not advanced indexing, whose backward sorts the indices (the slowest kernel of a training step on a GPU)."""
    return positions.index_select(1, graph.src) - positions.index_select(1, graph.dst)


def smoothness_loss(embedding: Tensor, graph: RadiusGraph) -> Tensor:
    """Embedding smoothness: weighted mean of |e_i - e_j|² over graph edges. embedding (G, E) -> scalar."""
    if graph.n_edges == 0:
        return embedding.new_zeros(())
    diff = embedding.index_select(0, graph.src).float() - embedding.index_select(0, graph.dst).float()
    return _wmean(diff.pow(2).sum(-1), graph.weight)


def distance_loss(positions: Tensor, graph: RadiusGraph) -> Tensor:
    """Neighbour-distance preservation: weighted mean of (|p_i - p_j| - d0_ij)² (Å²). positions (B, G, 3)."""
    if graph.n_edges == 0:
        return positions.new_zeros(())
    d = _edge_vectors(positions, graph).pow(2).sum(-1).add(1e-12).sqrt()  # (B, E)
    return _wmean((d - graph.rest_length).pow(2), graph.weight)


def alignment_loss(displacements: Tensor, graph: RadiusGraph) -> Tensor:
    """Displacement alignment: weighted mean of |Δ_i||Δ_j| (1 - cos(Δ_i, Δ_j)) (Å²), zero when neighbours move
    in the same direction and smooth at Δ = 0. displacements (B, G, 3)."""
    if graph.n_edges == 0:
        return displacements.new_zeros(())
    a, b = displacements.index_select(1, graph.src), displacements.index_select(1, graph.dst)
    na = a.pow(2).sum(-1).add(1e-12).sqrt()
    nb = b.pow(2).sum(-1).add(1e-12).sqrt()
    return _wmean(na * nb - (a * b).sum(-1), graph.weight)


def amplitude_change_loss(delta_amplitude: Tensor) -> Tensor:
    """Amplitude-change penalty: mean of Δa² over particles and Gaussians, Δa the decoder's pre-activation
    amplitude change (B, G) -> scalar. Makes a state cost more when it is expressed by fading Gaussians in and out
    than by moving them, while a removed subunit (a large, consistent Δa) still pays off in the render loss."""
    return delta_amplitude.float().pow(2).mean()


def repulsion_loss(positions: Tensor, graph: RadiusGraph, min_distance: float) -> Tensor:
    """Repulsion: weighted mean of relu(1 - d_ij / min_distance)² over edges of the deformed clouds (B, G, 3)."""
    if graph.n_edges == 0:
        return positions.new_zeros(())
    d = _edge_vectors(positions, graph).pow(2).sum(-1).add(1e-12).sqrt()
    return _wmean(torch.relu(1.0 - d / min_distance).pow(2), graph.weight)
