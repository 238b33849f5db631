"""The optimizer's parameter groups and the schedules of a training run: the learning rate's factor per step (and
per group: a group may stop learning after a number of steps) and the KL weight's."""

from __future__ import annotations

import math
from collections.abc import Callable

from gaussianem.model.vae import GaussianVAE
from gaussianem.training.config import TrainConfig


def param_groups(model: GaussianVAE, lr: float, readout_lr_scale: float,
                 amplitude_encoder_freeze_steps: int = 0, amplitude_encoder_thaw_steps: int = 0) -> list[dict]:
    """The trainable parameters as AdamW's groups: one at ``lr``, or, with ``readout_lr_scale`` != 1 and an
    amplitude read-out, the read-out's parameters (``decoder.readout_*``) in a second group at ``lr`` times it.
    With ``amplitude_encoder_freeze_steps`` > 0 and two image encoders (``--encoder-split``), the amplitude part's
    encoder (``image_encoder.amplitude_*``) is a group of its own, marked ``freeze_after``: that many steps (its
    learning rate then falls to 0, :func:`group_lr_factors`), and, with ``amplitude_encoder_thaw_steps`` > 0,
    ``thaw_at``: the step from which it learns again at the run's rate."""
    rest, readout, amp_encoder = [], [], []
    freeze = amplitude_encoder_freeze_steps > 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if freeze and name.startswith("image_encoder.amplitude_"):
            amp_encoder.append(p)
        elif name.startswith("decoder.readout_"):
            readout.append(p)
        else:
            rest.append(p)
    groups = ([{"params": rest + readout}] if readout_lr_scale == 1.0 or not readout
              else [{"params": rest}, {"params": readout, "lr": lr * readout_lr_scale}])
    if amp_encoder:
        groups.append({"params": amp_encoder, "freeze_after": amplitude_encoder_freeze_steps,
                       "thaw_at": amplitude_encoder_thaw_steps or None})
    return groups


def group_lr_factors(groups: list[dict], factor: Callable[[int], float]) -> list[Callable[[int], float]]:
    """Per AdamW group, its learning-rate factor at step s (LambdaLR's lambdas): ``factor(s)``, and 0 from step
    ``freeze_after`` on in a group that has it, until step ``thaw_at`` where it has one (``factor(s)`` again)."""
    def frozen(after: int, thaw: int | None) -> Callable[[int], float]:
        return lambda s: 0.0 if after <= s and (thaw is None or s < thaw) else factor(s)

    return [frozen(g["freeze_after"], g.get("thaw_at")) if g.get("freeze_after") else factor for g in groups]


def lr_factor(step: int, total_steps: int, schedule: str, decay_fraction: float = 0.25) -> float:
    """The learning rate's factor at optimizer step ``step`` of ``total_steps``.

    constant: 1. cosine: a half cosine from 1 to 0 over the run. wsd (warm-stable-decay without the warm-up): 1
    for the first ``1 - decay_fraction`` of the run, then a half cosine to 0 over the last ``decay_fraction``
    (the latent settles at the end without slowing the first epochs, where a motion may still be entering it).
    """
    t = min(step, total_steps) / max(total_steps, 1)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "wsd":
        start = 1.0 - decay_fraction
        return 1.0 if t <= start else 0.5 * (1 + math.cos(math.pi * (t - start) / max(decay_fraction, 1e-12)))
    return 1.0


def kl_weight_at(step: int, total_steps: int, weight: float, start_weight: float, ramp_start: float) -> float:
    """The KL weight at optimizer step ``step`` of ``total_steps`` under ``--kl-start-weight``: ``start_weight``
    for the first ``ramp_start`` of the run, then linear to ``weight`` at its end (a latent that takes in much at
    first, to find the motions, and is then held to the method's weight)."""
    t = min(step, total_steps) / max(total_steps, 1)
    if t <= ramp_start:
        return start_weight
    return start_weight + (weight - start_weight) * (t - ramp_start) / max(1.0 - ramp_start, 1e-12)


def kl_displacement_schedule(cfg: TrainConfig) -> Callable[[int], float] | None:
    """step -> the displacement dimensions' KL scale under ``--kl-displacement-scale-start-steps`` (1 before that
    step, ``--kl-displacement-scale`` from it on), or None where the scale is constant (the objective's own)."""
    start, scale = cfg.kl_displacement_scale_start_steps, cfg.kl_displacement_scale
    if not start or scale == 1.0:
        return None
    return lambda step: scale if step >= start else 1.0


def kl_schedule(cfg: TrainConfig, total_steps: int) -> Callable[[int], float] | None:
    """step -> the KL weight's factor on ``cfg.kl_weight`` (``--kl-start-weight``'s schedule times the
    ``--kl-warmup-steps`` ramp), or None where the weight is constant."""
    if cfg.kl_start_weight is None and not cfg.kl_warmup_steps:
        return None

    def factor(step: int) -> float:
        f = 1.0 if cfg.kl_start_weight is None else kl_weight_at(
            step, total_steps, cfg.kl_weight, cfg.kl_start_weight, cfg.kl_ramp_start) / cfg.kl_weight
        return f * min(1.0, step / cfg.kl_warmup_steps) if cfg.kl_warmup_steps else f
    return factor
