"""Densification and pruning of a Gaussian cloud during the homogeneous fit (a strategy object, as in gsplat).

The :class:`~gaussianem.gaussians.GaussianCloud` holds parameters only; this object holds the statistics that
decide where the cloud changes, and performs the changes together with the optimizer's state:

- after every backward pass it accumulates each Gaussian's position gradient ∂L/∂μ (G, 3); the norm of its mean
  over steps is the signal: noise averages out, a consistent pull towards missing density does not;
- every ``prune_every`` steps it removes Gaussians whose mass ``a·σ³`` is a small fraction of the median mass
  (near-zero amplitude or negligible contribution);
- every ``densify_every`` steps (inside the active window of the run) it adds Gaussians where the mean position
  gradient is large relative to the cloud's median: a Gaussian narrower than the middle of the width bounds is
  *cloned* (a copy placed one width down the gradient, i.e. where the loss wants density), a wider one is *split*
  into two children one width either side along the gradient direction, with narrower widths. Both keep the
  total mass, so the rendered images change little at the moment of the change.

Adam's moment estimates follow the Gaussians: survivors keep theirs, new Gaussians start from zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gaussianem.gaussians import GaussianCloud, amplitude_inverse, width_inverse
from gaussianem.training.config import StrategyConfig

log = logging.getLogger(__name__)


@dataclass
class RefineEvent:
    step: int
    pruned: int = 0
    cloned: int = 0
    split: int = 0
    n_gaussians: int = 0

    def changed(self) -> bool:
        return bool(self.pruned or self.cloned or self.split)


class DensifyPruneStrategy:
    """Accumulates position-gradient statistics and densifies/prunes a :class:`GaussianCloud` in place."""

    def __init__(self, config: StrategyConfig, n_gaussians: int, device=None) -> None:
        self.config = config
        self.grad_sum = torch.zeros(n_gaussians, 3, dtype=torch.float64, device=device)
        self.count = 0

    # ----------------------------------------------------------------- statistics
    def after_backward(self, cloud: GaussianCloud) -> None:
        """Accumulate ∂L/∂μ (G, 3) from ``cloud.positions.grad`` (call after ``loss.backward()``)."""
        if not self.config.densify or cloud.positions.grad is None:
            return
        self.grad_sum += cloud.positions.grad.detach().to(self.grad_sum)
        self.count += 1

    def reset_statistics(self, n_gaussians: int | None = None) -> None:
        n = self.grad_sum.shape[0] if n_gaussians is None else n_gaussians
        self.grad_sum = torch.zeros(n, 3, dtype=torch.float64, device=self.grad_sum.device)
        self.count = 0

    def state_dict(self) -> dict:
        return {"grad_sum": self.grad_sum.cpu(), "count": self.count, "config": self.config.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.grad_sum = state["grad_sum"].to(self.grad_sum.device)
        self.count = int(state["count"])

    # ----------------------------------------------------------------- decisions
    def prune_mask(self, cloud: GaussianCloud) -> Tensor:
        """(G,) bool: Gaussians to remove (mass a·σ³ below ``prune_mass_fraction`` × median mass)."""
        with torch.no_grad():
            mass = cloud.amplitudes * cloud.widths**3
            return mass < self.config.prune_mass_fraction * mass.median()

    def densify_candidates(self, cloud: GaussianCloud) -> Tensor:
        """Indices (K,) of Gaussians whose mean position gradient is large, largest first, capped."""
        cfg = self.config
        if self.count == 0:
            return torch.zeros(0, dtype=torch.long, device=cloud.positions.device)
        mean = (self.grad_sum / self.count).norm(dim=-1)
        thr = cfg.grad_factor * mean.median()
        idx = torch.nonzero(mean > thr).flatten()
        idx = idx[torch.argsort(mean[idx], descending=True)]
        cap = max(1, int(cfg.max_densify_fraction * cloud.n))
        if cfg.max_gaussians is not None:
            cap = min(cap, max(0, cfg.max_gaussians - cloud.n))
        return idx[:cap].to(cloud.positions.device)

    # ----------------------------------------------------------------- the step hook
    def step(self, cloud: GaussianCloud, optimizer: torch.optim.Optimizer | None, step: int,
             total_steps: int) -> RefineEvent:
        """Call after ``optimizer.step()`` with the 1-based global step; may change the cloud and optimizer."""
        cfg = self.config
        event = RefineEvent(step=step, n_gaussians=cloud.n)
        if step < cfg.start_step:
            return event
        if cfg.densify and step % cfg.densify_every == 0 and step <= cfg.stop_fraction * total_steps:
            cand = self.densify_candidates(cloud)
            if len(cand):
                event.cloned, event.split = self.densify_(cloud, optimizer, cand)
            self.reset_statistics(cloud.n)
        if cfg.prune and step % cfg.prune_every == 0:
            mask = self.prune_mask(cloud)
            if cfg.max_gaussians is not None and cloud.n - int(mask.sum()) > cfg.max_gaussians:
                # over the cap: also drop the lightest survivors
                with torch.no_grad():
                    mass = cloud.amplitudes * cloud.widths**3
                    order = torch.argsort(mass.masked_fill(mask, -1.0), descending=True)
                    mask = torch.ones_like(mask)
                    mask[order[: cfg.max_gaussians]] = False
            if mask.any():
                event.pruned = self.prune_(cloud, optimizer, mask)
        event.n_gaussians = cloud.n
        if event.changed():
            log.debug("step %d: pruned %d, cloned %d, split %d -> %d Gaussians", step, event.pruned,
                      event.cloned, event.split, cloud.n)
        return event

    # ----------------------------------------------------------------- the changes
    def prune_(self, cloud: GaussianCloud, optimizer: torch.optim.Optimizer | None, mask: Tensor) -> int:
        """Remove the Gaussians where ``mask`` (G,) is True. Returns how many were removed."""
        keep = torch.nonzero(~mask).flatten()
        if len(keep) == 0:
            raise RuntimeError("pruning would remove every Gaussian: the fit diverged (all amplitudes vanished)")
        with torch.no_grad():
            new = {name: getattr(cloud, name).detach()[keep] for name in _PARAMS}
        _replace_parameters(cloud, optimizer, keep, new, n_new=0)
        if self.grad_sum.shape[0] == mask.shape[0]:
            self.grad_sum = self.grad_sum[keep.to(self.grad_sum.device)]
        return int(mask.sum())

    def densify_(self, cloud: GaussianCloud, optimizer: torch.optim.Optimizer | None,
                 index: Tensor) -> tuple[int, int]:
        """Clone narrow and split wide Gaussians among ``index`` (K,). Returns (cloned, split)."""
        cfg = self.config
        with torch.no_grad():
            pos, wid, amp = (t.detach() for t in cloud.physical())
            mid = 0.5 * (cloud.width_min + cloud.width_max)
            direction = -self.grad_sum[index.to(self.grad_sum.device)].to(pos)  # downhill: where density is wanted
            direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            small = wid[index] < mid
            clone_idx, split_idx = index[small], index[~small]
            d_clone, d_split = direction[small], direction[~small]

            # clones: parent stays, copy one width downhill; mass shared equally
            c_pos = pos[clone_idx] + d_clone * wid[clone_idx, None]
            c_wid = wid[clone_idx]
            c_amp = 0.5 * amp[clone_idx]
            # splits: parent replaced by the child at +direction, a new child at -direction; mass shared
            s_wid = (wid[split_idx] * cfg.split_shrink).clamp(cloud.width_min * 1.001, cloud.width_max * 0.999)
            s_amp = 0.5 * amp[split_idx] * (wid[split_idx] / s_wid) ** 3
            off = d_split * wid[split_idx, None]

            new_pos, new_wid, new_amp = pos.clone(), wid.clone(), amp.clone()
            new_amp[clone_idx] = c_amp
            new_pos[split_idx] = pos[split_idx] + off
            new_wid[split_idx] = s_wid
            new_amp[split_idx] = s_amp
            new_pos = torch.cat([new_pos, c_pos, pos[split_idx] - off])
            new_wid = torch.cat([new_wid, c_wid, s_wid])
            new_amp = torch.cat([new_amp, c_amp, s_amp])
            new = {
                "positions": new_pos,
                "width_raw": width_inverse(new_wid, cloud.width_min, cloud.width_max),
                "amplitude_raw": amplitude_inverse(new_amp),
            }
            # every parent whose values changed restarts its moments too
            src = torch.arange(cloud.n, device=pos.device)
            reset = torch.cat([clone_idx, split_idx])
        _replace_parameters(cloud, optimizer, src, new, n_new=len(clone_idx) + len(split_idx), reset=reset)
        return len(clone_idx), len(split_idx)


_PARAMS = ("positions", "width_raw", "amplitude_raw")


def _replace_parameters(cloud: GaussianCloud, optimizer: torch.optim.Optimizer | None, src: Tensor,
                        new: dict[str, Tensor], n_new: int, reset: Tensor | None = None) -> None:
    """Swap the cloud's parameters for ``new`` (each (len(src) + n_new, ...)) and carry Adam's state.

    Row ``i < len(src)`` of a new parameter inherits the optimizer state of old row ``src[i]``; the ``n_new``
    appended rows (and rows listed in ``reset``) start with zero moments.
    """
    for name in _PARAMS:
        old = getattr(cloud, name)
        param = nn.Parameter(new[name].to(old.dtype).contiguous(), requires_grad=old.requires_grad)
        if optimizer is not None:
            for group in optimizer.param_groups:
                for i, p in enumerate(group["params"]):
                    if p is not old:
                        continue
                    state = optimizer.state.pop(old, None)
                    if state:
                        for key, value in state.items():
                            if isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == old.shape[0]:
                                kept = value[src]
                                if reset is not None and len(reset):
                                    kept[reset] = 0
                                pad = torch.zeros((n_new, *value.shape[1:]), dtype=value.dtype, device=value.device)
                                state[key] = torch.cat([kept, pad])
                        optimizer.state[param] = state
                    group["params"][i] = param
        setattr(cloud, name, param)
