"""Control-point decoder: the pair MLP runs per (particle, control point), not per (particle, Gaussian).

The per-particle cost of :class:`~gaussianem.model.decoder.Decoder` is a full MLP per Gaussian (about 100 kFLOP
forward with the DESIGN sizes, 6 GFLOP per particle at 60,000 Gaussians). Here the same MLP runs on K control
points (K ≪ G, chosen once from the base cloud) and every Gaussian reads its changes from two cheap terms:

* **interpolation** (smooth): ``Δ_g = Σ_j w_gj · Δ_c(g, j)`` over the k nearest control points of Gaussian g
  (normalised Gaussian RBF weights of the base distances, fixed buffers ``index`` (G, k), ``weight`` (G, k));
* **low-rank read-out** (sharp, per Gaussian): ``Δ_g += ⟨u_g, h(z)⟩`` for the channels in ``sharp_channels``
  (amplitude by default), with ``u_g`` (G, r) learned per Gaussian (a free vector plus a linear map of the
  Gaussian's embedding) and ``h(z)`` (r per channel) a small MLP on z. A subunit can fade to ~0 while its
  touching neighbour stays at base, which an interpolation of control points would blur across the boundary.

``embed_on`` says what the embedding passed to ``forward(z, embedding)`` is:

* ``"gaussians"``: one row per Gaussian (G, E); the decoder pools them onto the control points by the transpose of
  the interpolation (column-normalised), and ``u_g`` adds a linear map of the Gaussian's embedding;
* ``"control"``: one row per control point (K, E), the Gaussian encoder having run on the control points' pooled
  base features (:meth:`ControlPointDecoder.pool_rows`); ``u_g`` is the free vector alone (the smooth part of an
  amplitude change comes through the interpolation). Nothing per step then grows with G but the interpolation and
  the read-out's (G, r) product.

Output: (B, G, n_out) raw head outputs ``[Δamp, Δx, Δy, Δz(, Δwidth)]``, as :class:`Decoder`. All heads start
at zero: training starts at the base cloud.

Fast paths (gather / ``embedding_bag`` / ``index_add``) have dense references (``(G, K)`` weight matrix products,
:meth:`ControlPointDecoder.forward_reference`); tests compare forward and gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaussianem.model.decoder import Decoder
from gaussianem.model.spec import READOUT_ZEROS


# ---- control points and interpolation weights ------------------------------------------------------------------
@dataclass(frozen=True)
class ControlGraph:
    """Control points of a base cloud and each Gaussian's interpolation from them.

    Attributes:
        control_positions: (K, 3) Å. index: (G, k) int64 control-point indices, nearest first.
        weight: (G, k) interpolation weights (rows sum to 1). bandwidth_angstrom: RBF width h used for the weights.
    """

    control_positions: Tensor
    index: Tensor
    weight: Tensor
    bandwidth_angstrom: float

    @property
    def n_control(self) -> int:
        return self.control_positions.shape[0]

    def dense_weights(self) -> Tensor:
        """The interpolation as a dense (G, K) matrix (reference paths; small sizes)."""
        return interpolation_matrix(self.index, self.weight, self.n_control)


def interpolation_matrix(index: Tensor, weight: Tensor, n_control: int) -> Tensor:
    """index (G, k), weight (G, k) -> dense W (G, K) with ``W[g, index[g, j]] = weight[g, j]``."""
    w = torch.zeros(index.shape[0], n_control, dtype=weight.dtype, device=weight.device)
    return w.scatter_add(1, index, weight)


def _nearest(a: Tensor, b: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k nearest rows of b (M, 3) to each row of a (N, 3), nearest first: squared distances (N, k) float64 and
    indices (N, k) int64, on a's device (a k-d tree of b, scipy's: N·log M, not the N × M distance matrix)."""
    from scipy.spatial import cKDTree

    pa, pb = (t.detach().cpu().double().numpy() for t in (a, b))
    d, i = cKDTree(pb).query(pa, k=k)
    d, i = d.reshape(len(pa), k), i.reshape(len(pa), k)
    return (torch.as_tensor(d * d, device=a.device), torch.as_tensor(i, dtype=torch.long, device=a.device))


def farthest_point_sampling(positions: Tensor, n: int, seed: int = 0) -> Tensor:
    """Indices (n,) int64 of n points of positions (G, 3) chosen greedily farthest from those already chosen.

    Deterministic given ``seed`` (it picks the first point; ties go to the lowest index)."""
    g = positions.shape[0]
    if not 0 < n <= g:
        raise ValueError(f"cannot pick {n} control points from {g} Gaussians")
    gen = torch.Generator().manual_seed(seed)
    first = int(torch.randint(g, (1,), generator=gen))
    chosen = torch.empty(n, dtype=torch.long, device=positions.device)
    chosen[0] = first
    d2 = (positions - positions[first]).pow(2).sum(1)
    for i in range(1, n):
        nxt = torch.argmax(d2)
        chosen[i] = nxt
        d2 = torch.minimum(d2, (positions - positions[nxt]).pow(2).sum(1))
    return chosen


def build_control_graph(positions: Tensor, n_control: int = 1024, k: int = 8, bandwidth_scale: float = 1.0,
                        kmeans_iters: int = 10, seed: int = 0) -> ControlGraph:
    """Control points and interpolation weights from base positions (G, 3) Å. Pure and deterministic given seed.

    Control points: farthest-point sampling, then ``kmeans_iters`` Lloyd iterations (an empty cluster keeps its
    centre), so they sit at the centroids of K patches of the cloud. Each Gaussian reads its k nearest control
    points with weights ``softmax_j(-d_gj² / 2h²)``, h = ``bandwidth_scale`` × the median distance from a control
    point to its nearest other control point (the spacing), computed in float64 on the positions' device.

    Returns a :class:`ControlGraph` with tensors in the positions' dtype (weights) on their device.
    """
    with torch.no_grad():
        pos = positions.detach().double()
        g = pos.shape[0]
        n_control = min(n_control, g)
        k = min(k, n_control)
        centres = pos[farthest_point_sampling(pos, n_control, seed)].clone()
        for _ in range(kmeans_iters):
            _, assign = _nearest(pos, centres, 1)
            assign = assign[:, 0]
            sums = torch.zeros_like(centres).index_add_(0, assign, pos)
            counts = torch.bincount(assign, minlength=n_control).to(pos.dtype)
            filled = counts > 0
            centres[filled] = sums[filled] / counts[filled, None]
        if n_control > 1:
            nn_d2, _ = _nearest(centres, centres, 2)
            spacing = float(nn_d2[:, 1].sqrt().median())
        else:
            spacing = float((pos - centres).norm(dim=1).max()) if g > 1 else 1.0
        h = bandwidth_scale * max(spacing, 1e-6)
        d2, index = _nearest(pos, centres, k)
        weight = torch.softmax(-d2 / (2 * h * h), dim=1)
        dtype = positions.dtype if positions.is_floating_point() else torch.float32
        return ControlGraph(centres.to(dtype), index, weight.to(dtype), h)


# ---- FLOP counts -----------------------------------------------------------------------------------------------
def _pair_mlp_flops(zdim: int, hidden: int, n_layers: int, features: int, n_out: int) -> tuple[int, int, int]:
    """Forward FLOPs (2 per multiply-add) of the pair MLP: (per pair, per particle, per row of the embedding)."""
    per_pair = 2 * (hidden * hidden * (n_layers - 1) + hidden * features + features * n_out) + hidden
    return per_pair, 2 * zdim * hidden, 0


def pair_decoder_flops_per_particle(n_gaussians: int, zdim: int = 10, embedding_dim: int = 32, hidden: int = 128,
                                    n_layers: int = 2, features: int = 256, predict_width: bool = False,
                                    batch: int = 32, training: bool = True) -> float:
    """FLOPs per particle of :class:`~gaussianem.model.decoder.Decoder` (forward, ×3 when ``training``).

    Per pair: the broadcast sum (H) and the MLP after the split first layer; per particle: ``W_z z``; per step
    (shared by the batch, divided by ``batch``): ``W_e e`` for every Gaussian. Biases and activations ignored."""
    n_out = 5 if predict_width else 4
    per_pair, per_particle, _ = _pair_mlp_flops(zdim, hidden, n_layers, features, n_out)
    shared = 2 * n_gaussians * embedding_dim * hidden
    forward = n_gaussians * per_pair + per_particle + shared / batch
    return float(forward * (3 if training else 1))


def control_decoder_flops_per_particle(n_gaussians: int, n_control: int, k: int = 8, rank: int = 32,
                                       n_sharp: int = 1, readout_hidden: int = 128, zdim: int = 10,
                                       embedding_dim: int = 32, hidden: int = 128, n_layers: int = 2,
                                       features: int = 256, predict_width: bool = False, batch: int = 32,
                                       training: bool = True, dense: bool = False) -> float:
    """FLOPs per particle of :class:`ControlPointDecoder` (forward, ×3 when ``training``).

    Per particle: the pair MLP on K control points, the interpolation (G·k·n_out multiply-adds), the read-out MLP
    h(z) and ⟨u_g, h(z)⟩ (G·r·n_sharp) and its addition; per step (÷ batch): pooling the embeddings onto the
    control points (G·k·E), ``W_e e`` on K rows, ``u_g`` from the embeddings (G·E·r). ``dense``: the FLOPs the
    "dense" interpolation executes, its (G, K) matrix products (G·K in place of G·k, zeros included)."""
    n_out = 5 if predict_width else 4
    per_pair, per_particle, _ = _pair_mlp_flops(zdim, hidden, n_layers, features, n_out)
    k = n_control if dense else k
    interp = 2 * n_gaussians * k * n_out
    readout = 0
    if rank > 0 and n_sharp > 0:
        readout = 2 * (zdim * readout_hidden + readout_hidden * rank * n_sharp) + 2 * n_gaussians * rank * n_sharp
        readout += n_gaussians * n_sharp
    shared = 2 * n_gaussians * k * embedding_dim + 2 * n_control * embedding_dim * hidden
    if rank > 0 and n_sharp > 0:
        shared += 2 * n_gaussians * embedding_dim * rank
    forward = n_control * per_pair + per_particle + interp + readout + shared / batch
    return float(forward * (3 if training else 1))


INTERPOLATIONS = ("auto", "dense", "embedding_bag", "gather")
EMBED_ON = ("gaussians", "control")


# ---- the decoder -----------------------------------------------------------------------------------------------
class ControlPointDecoder(nn.Module):
    """Pair MLP on K control points + fixed sparse interpolation + low-rank per-Gaussian read-out.

    Args:
        zdim, embedding_dim, hidden, n_layers, features, predict_width: as :class:`Decoder` (the control-point MLP
            is a :class:`Decoder`).
        graph: a :class:`ControlGraph` of the base cloud (``build_control_graph``); its index/weight become
            buffers ``control_index`` (G, k) int64, ``control_weight`` (G, k), and ``control_positions`` (K, 3).
        rank: r of the per-Gaussian read-out (0 disables it); readout_hidden: width of h(z)'s hidden layer;
        sharp_channels: output channels that get the read-out (default: amplitude only, channel 0).
        interpolation: "dense" (the (G, K) weight matrix, scattered from the k weights every call, times the
            control outputs: GEMMs on tensor cores forward and backward, no index kernels, no host sync; CUDA
            graph safe), "embedding_bag" (one fused weighted gather), "gather" (k index_selects, summed) or "auto"
            (dense on CUDA, embedding_bag elsewhere, where a (G, K) matrix costs more than k gathers); same result,
            different kernels (benchmarks/speed/decoder_projection.py times them).
        embed_on: "gaussians" (embeddings (G, E), pooled here) or "control" (embeddings (K, E)); see the module.
        displacement_dims: 0, or N: the control points' MLP reads the first N dimensions of z and draws no
            amplitude change, the read-out reads the other zdim - N (a latent split between motions and states).
        readout_control: the read-out's per-Gaussian vectors u also get a part interpolated from per-control-point
            vectors (K, r) (zero at the start), a spatially smooth basis of amplitude changes shared by neighbouring
            Gaussians, as the control points' MLP draws them (which a latent split turns off).
        readout_zero: the factor of u_g · h(z) that starts at zero: "vectors" (u and the embedding's map onto it;
            h's last layer keeps its default random init) or "latent" (h's last layer; u random, the old default).
    """

    def __init__(self, zdim: int, graph: ControlGraph, embedding_dim: int = 32, hidden: int = 128,
                 n_layers: int = 2, features: int = 256, predict_width: bool = False, rank: int = 32,
                 readout_hidden: int = 128, sharp_channels: tuple[int, ...] = (0,), seed: int = 0,
                 interpolation: str = "auto", embed_on: str = "gaussians", combine: str = "sum",
                 displacement_dims: int = 0, readout_control: bool = False, readout_zero: str = "vectors") -> None:
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, not {interpolation!r}")
        if readout_zero not in READOUT_ZEROS:
            raise ValueError(f"readout_zero must be one of {READOUT_ZEROS}, not {readout_zero!r}")
        if embed_on not in EMBED_ON:
            raise ValueError(f"embed_on must be one of {EMBED_ON}, not {embed_on!r}")
        self.interpolation = interpolation
        self.embed_on = embed_on
        self.pair = Decoder(zdim, embedding_dim, hidden, n_layers, features, predict_width, combine)
        self.n_out = self.pair.n_out
        self.predict_width = predict_width
        if any(not 0 <= c < self.n_out for c in sharp_channels):
            raise ValueError(f"sharp channels {sharp_channels} outside 0..{self.n_out - 1}")
        self.register_buffer("control_index", graph.index.detach().clone().long())
        self.register_buffer("control_weight", graph.weight.detach().clone().float())
        self.register_buffer("control_positions", graph.control_positions.detach().clone().float())
        n_control = graph.n_control
        col = torch.zeros(n_control).index_add_(0, graph.index.reshape(-1).cpu(),
                                                graph.weight.reshape(-1).float().cpu())
        # pooled embeddings are divided by each control point's total weight (controls nobody reads get 0)
        self.register_buffer("pool_norm", (1.0 / col.clamp_min(1e-12)).to(graph.weight.device))
        self.rank = rank
        self.sharp_channels = tuple(sharp_channels) if rank > 0 else ()
        n_sharp = len(self.sharp_channels)
        if n_sharp:
            n_g = graph.index.shape[0]
            vectors = (torch.randn(n_g, rank, generator=torch.Generator().manual_seed(seed)) / math.sqrt(rank)
                       if readout_zero == "latent" else torch.zeros(n_g, rank))
            self.readout_vectors = nn.Parameter(vectors)
            self.readout_embed = nn.Linear(embedding_dim, rank, bias=False) if embed_on == "gaussians" else None
            self.readout_control = nn.Parameter(torch.zeros(n_control, rank)) if readout_control else None
            self.readout_net = nn.Sequential(nn.Linear(zdim, readout_hidden), nn.ReLU(),
                                             nn.Linear(readout_hidden, rank * n_sharp))
            nn.init.zeros_(self.readout_net[-1].bias)
            if readout_zero == "latent":
                nn.init.zeros_(self.readout_net[-1].weight)
            elif self.readout_embed is not None:  # made (and zeroed) so that the global RNG draws stay the same
                nn.init.zeros_(self.readout_embed.weight)
            select = torch.zeros(n_sharp, self.n_out)
            select[torch.arange(n_sharp), torch.tensor(self.sharp_channels)] = 1.0
            self.register_buffer("sharp_select", select, persistent=False)
        self.displacement_dims = displacement_dims
        if displacement_dims:
            if not 0 < displacement_dims < zdim or 0 not in self.sharp_channels:
                raise ValueError(f"displacement_dims={displacement_dims} needs 0 < it < zdim={zdim} and an "
                                 "amplitude read-out (rank > 0, channel 0 sharp)")
            motion = (torch.arange(zdim) < displacement_dims).float()
            self.register_buffer("motion_mask", motion, persistent=False)  # z dims of the control points' MLP
            self.register_buffer("amplitude_mask", 1.0 - motion, persistent=False)  # z dims of the read-out
            keep = torch.ones(self.n_out)
            keep[0] = 0.0  # the control points' MLP draws no amplitude change
            self.register_buffer("control_keep", keep, persistent=False)
            # 1 once the split is opened (open_split): every dimension then drives every change. Saved with the
            # weights, so a checkpoint decodes as it was trained; a checkpoint without it had its split closed
            self.register_buffer("split_open", torch.zeros(()))

    @property
    def n_control(self) -> int:
        return self.control_positions.shape[0]

    @property
    def n_gaussians(self) -> int:
        return self.control_index.shape[0]

    # ---- pieces (fast) ----------------------------------------------------------------------------------------
    def mode(self, device: torch.device) -> str:
        """The interpolation kernels used for tensors on ``device`` ("auto" resolved)."""
        if self.interpolation == "auto":
            return "dense" if device.type == "cuda" else "embedding_bag"
        return self.interpolation

    def dense_weights(self, dtype: torch.dtype) -> Tensor:
        """The interpolation as a (G, K) matrix in ``dtype`` (no gradient), scattered from the (G, k) buffers."""
        w = torch.zeros(self.n_gaussians, self.n_control, dtype=dtype, device=self.control_weight.device)
        return w.scatter_(1, self.control_index, self.control_weight.to(dtype))

    def pool_embedding(self, embedding: Tensor) -> Tensor:
        """The embedding ``forward`` gets -> control-point embeddings (K, E): Gaussian embeddings (G, E) pooled by
        :meth:`pool_rows` (``embed_on="gaussians"``), or the control points' own (K, E), returned as they are."""
        if self.embed_on == "control":
            return embedding
        return self.pool_rows(embedding)

    def pool_rows(self, rows: Tensor, dense: bool | None = None) -> Tensor:
        """Per-Gaussian rows (G, F) -> per-control-point rows (K, F): weighted means by the interpolation weights
        (the transpose of the interpolation, column-normalised). ``dense``: the (G, K) matrix product (default:
        as :meth:`mode`), else one ``index_add``."""
        dense = self.mode(rows.device) == "dense" if dense is None else dense
        norm = self.pool_norm.to(rows.dtype)[:, None]
        if dense:
            return (self.dense_weights(rows.dtype).T @ rows) * norm
        idx, w = self.control_index, self.control_weight.to(rows.dtype)
        src = (w[:, :, None] * rows[:, None, :]).reshape(-1, rows.shape[1])
        out = torch.zeros(self.n_control, rows.shape[1], dtype=rows.dtype, device=rows.device)
        return out.index_add(0, idx.reshape(-1), src) * norm

    def interpolate(self, control_out: Tensor) -> Tensor:
        """Control-point outputs (B, K, n) -> per-Gaussian (B, G, n) (float32 or float64) by the sparse
        interpolation (one ``embedding_bag``: a weighted sum of k gathered rows per Gaussian)."""
        b, k, n = control_out.shape
        mode = self.mode(control_out.device)
        if mode == "dense":  # (G, K) × (K, B·n) in the control outputs' dtype (bf16 under autocast)
            table = control_out.permute(1, 0, 2).reshape(k, b * n)
            out = torch.matmul(self.dense_weights(table.dtype), table)
            return out.reshape(-1, b, n).permute(1, 0, 2).to(torch.promote_types(out.dtype, torch.float32))
        dtype = torch.promote_types(control_out.dtype, torch.float32)  # float32 under bf16 autocast
        if mode == "gather":
            src = control_out.to(dtype)
            w = self.control_weight.to(dtype)
            out = src.index_select(1, self.control_index[:, 0]) * w[None, :, 0, None]
            for j in range(1, self.control_index.shape[1]):
                out = out + src.index_select(1, self.control_index[:, j]) * w[None, :, j, None]
            return out
        table = control_out.to(dtype).permute(1, 0, 2).reshape(k, b * n)
        with torch.autocast(control_out.device.type, enabled=False):
            out = F.embedding_bag(self.control_index, table, mode="sum",
                                  per_sample_weights=self.control_weight.to(dtype))
        return out.reshape(-1, b, n).permute(1, 0, 2)

    def readout_weights(self, embedding: Tensor) -> Tensor:
        """Per-Gaussian read-out vectors u (G, r) = free vectors (+ a linear map of the Gaussians' embeddings with
        ``embed_on="gaussians"``; + the control points' read-out vectors interpolated, with ``readout_control``)."""
        u = self.readout_vectors.to(embedding.dtype)
        if self.readout_embed is not None:
            u = u + self.readout_embed(embedding)
        if self.readout_control is not None:
            u = u + self.interpolate(self.readout_control[None].to(embedding.dtype))[0].to(u.dtype)
        return u

    def sharp(self, z: Tensor, embedding: Tensor) -> Tensor:
        """The low-rank per-Gaussian term (B, G, n_out) (zero in the channels without a read-out)."""
        u = self.readout_weights(embedding)  # (G, r)
        b, c = z.shape[0], len(self.sharp_channels)
        h = self.readout_net(z).reshape(b, self.rank, c)  # (B, r, c)
        # one (G, r) × (r, B·c) product: no (B, G, r) broadcast of u in the forward or its gradient
        s = torch.matmul(u.to(h.dtype), h.permute(1, 0, 2).reshape(self.rank, b * c))  # (G, B·c)
        s = s.reshape(-1, b, c).permute(1, 0, 2)  # (B, G, c)
        if self.sharp_channels == tuple(range(c)):  # the usual case (amplitude only): pad, no (B, G, c) × (c, n)
            return torch.nn.functional.pad(s, (0, self.n_out - c))  # batched product (a bmm forward and backward)
        return torch.matmul(s, self.sharp_select.to(s.dtype))

    # ---- forward ----------------------------------------------------------------------------------------------
    def forward(self, z: Tensor, embedding: Tensor) -> Tensor:
        """z (B, zdim), embedding (G, E) -> raw head outputs (B, G, n_out): [Δamp, Δx, Δy, Δz(, Δwidth)]."""
        return self.forward_with_control(z, embedding)[0]

    def forward_with_control(self, z: Tensor, embedding: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward` and the control points' own outputs: (B, G, n_out), (B, K, n_out). Every Gaussian's
        displacement is a convex combination of the control points' (the read-out is amplitude only), so the
        geometric regularisers can be evaluated on the K control points instead of the G Gaussians."""
        z_control, z_sharp = self.split_latent(z)
        control_out = self.pair(z_control, self.pool_embedding(embedding))  # (B, K, n_out)
        if self.displacement_dims:
            control_out = control_out * self._opened(self.control_keep, control_out.dtype)
        out = self.interpolate(control_out)
        if self.sharp_channels:
            out = out + self.sharp(z_sharp, embedding).to(out.dtype)
        return out, control_out

    def split_latent(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, zdim) -> the control points' MLP's z and the read-out's z, each (B, zdim): z itself twice, or with
        ``displacement_dims`` = N the first N dimensions (the others zeroed) and the other zdim - N."""
        if not self.displacement_dims:
            return z, z
        return z * self._opened(self.motion_mask, z.dtype), z * self._opened(self.amplitude_mask, z.dtype)

    def _opened(self, mask: Tensor, dtype: torch.dtype) -> Tensor:
        """A split's 0/1 mask, all ones once the split is open (tensor arithmetic: no host sync, CUDA graph safe)."""
        mask = mask.to(dtype)
        return mask + self.split_open.to(dtype) * (1.0 - mask)

    @torch.no_grad()
    def open_split(self) -> None:
        """Open the latent split in place: from now on every dimension of z drives every change (the decoder of
        ``displacement_dims=0``). What the split kept from training is set to zero first (the first-layer weights
        on the dimensions a part did not read, whose inputs were zero, and the MLP's amplitude output, which was
        masked), so the decoded clouds do not jump at the opening and the new dependences grow from zero. A no-op
        without a split or once open."""
        if not self.displacement_dims or bool(self.split_open):
            return
        n = self.displacement_dims
        for layer in (self.pair.z_proj, self.pair.z_gain):
            if layer is not None:
                layer.weight[:, n:] = 0.0
        self.readout_net[0].weight[:, :n] = 0.0
        self.pair.head.weight[0] = 0.0
        self.pair.head.bias[0] = 0.0
        self.split_open.fill_(1.0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before the split could be opened: a closed split
        if self.displacement_dims and prefix + "split_open" not in state_dict:
            state_dict[prefix + "split_open"] = torch.zeros(())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward_reference(self, z: Tensor, embedding: Tensor) -> Tensor:
        """Plain reference of :meth:`forward`: dense (G, K) interpolation matrix products, concatenation MLP."""
        w = interpolation_matrix(self.control_index, self.control_weight.to(embedding.dtype), self.n_control)
        pooled = embedding
        if self.embed_on == "gaussians":
            pooled = (w.T @ embedding) * self.pool_norm.to(embedding.dtype)[:, None]
        z_control, z_sharp = z, z
        split = self.displacement_dims and not bool(self.split_open)
        if split:
            n = self.displacement_dims
            z_control = torch.cat([z[:, :n], torch.zeros_like(z[:, n:])], dim=1)
            z_sharp = torch.cat([torch.zeros_like(z[:, :n]), z[:, n:]], dim=1)
        control_out = self.pair.forward_concat(z_control, pooled)
        if split:
            control_out = torch.cat([torch.zeros_like(control_out[..., :1]), control_out[..., 1:]], dim=-1)
        dtype = torch.promote_types(control_out.dtype, torch.float32)
        out = torch.einsum("gk,bkn->bgn", w.to(dtype), control_out.to(dtype))
        if self.sharp_channels:
            u = self.readout_vectors.to(embedding.dtype)
            if self.readout_embed is not None:
                u = u + embedding @ self.readout_embed.weight.T
            if self.readout_control is not None:
                u = u + w.to(u.dtype) @ self.readout_control.to(u.dtype)
            h = self.readout_net(z_sharp).reshape(z.shape[0], self.rank, len(self.sharp_channels))
            s = torch.einsum("gr,brc->bgc", u, h)
            full = torch.zeros_like(out)
            full[..., list(self.sharp_channels)] = s
            out = out + full
        return out

    def flops_per_particle(self, batch: int = 32, training: bool = True) -> float:
        """This decoder's FLOPs per particle (see :func:`control_decoder_flops_per_particle`)."""
        pair = self.pair
        n_layers = sum(isinstance(m, nn.Linear) for m in pair.mlp)
        return control_decoder_flops_per_particle(
            self.n_gaussians, self.n_control, self.control_index.shape[1], self.rank, len(self.sharp_channels),
            self.readout_net[0].out_features if self.sharp_channels else 0, pair.z_proj.in_features,
            pair.e_proj.in_features, pair.z_proj.out_features, n_layers, pair.head.in_features,
            self.predict_width, batch, training, dense=self.mode(self.control_index.device) == "dense")


def flops_per_particle(decoder: nn.Module, n_gaussians: int | None = None, batch: int = 32,
                       training: bool = True) -> float:
    """FLOPs per particle of either decoder: :class:`Decoder` (needs ``n_gaussians``) or
    :class:`ControlPointDecoder` (its own G). Forward only unless ``training`` (then ×3: forward + backward)."""
    if isinstance(decoder, ControlPointDecoder):
        return decoder.flops_per_particle(batch, training)
    if isinstance(decoder, Decoder):
        if n_gaussians is None:
            raise ValueError("the pair decoder's cost depends on the number of Gaussians: pass n_gaussians")
        return pair_decoder_flops_per_particle(
            n_gaussians, decoder.z_proj.in_features, decoder.e_proj.in_features, decoder.z_proj.out_features,
            sum(isinstance(m, nn.Linear) for m in decoder.mlp), decoder.head.in_features, decoder.predict_width,
            batch, training)
    raise TypeError(f"no FLOP count for {type(decoder).__name__}")
