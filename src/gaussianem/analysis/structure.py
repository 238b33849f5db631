"""Which structure a latent space holds: discrete states, continuous motions, or both.

- **States**: a Gaussian mixture on z (full covariances), its number of components chosen by BIC. A mixture fits
  a continuum with several components too, so components that share one density mode are merged: two components
  belong to one state when the mixture density along the segment joining their means never falls below
  ``dip_ratio`` of the lower of its two ends (no valley between them). States holding less than ``min_fraction``
  of the particles are merged into their most connected neighbour. The whole is repeated from ``n_restarts``
  seeds; the most frequent number of states is kept and its agreement with the other restarts (mean adjusted
  Rand index) is reported as ``stability``.
- **Motions**: principal directions of z after each particle's state mean is removed (within-state PCA), so that
  a motion is found even when the states dominate PC1. A within-state PC is a *motion candidate* when its scores
  are unimodal (one state by the rule above, in 1-D), wide (its standard deviation at least ``MIN_WIDTH``
  times the median of the later PCs') and set apart (at least ``MIN_SEPARATION`` times the next PC's and at most
  1 / ``MIN_SEPARATION`` times the previous one's: an isotropic scatter singles out no direction); ``analyze``
  then keeps it as a motion when the two ends of its trajectory decode to different structures (:func:`decide`).
  When no pooled within-state PC is a motion and there are several states, each state's own PCA is tried in turn
  (most populous first; states of at least ``MIN_STATE_PARTICLES``), and the first state with a motion gives the
  motions (:func:`find_motions`): a decoder may draw one motion along different latent directions in different
  states (the latent split of ``train`` does: on a simulated hinge with a subunit present or absent, the two
  states' motion directions were nearly orthogonal, so the pooled residuals had two equal PCs and no motion).
  Limits: two independent motions of equal spread single out no direction, and are reported as PC trajectories
  only; a state must be separated from its neighbour by a density valley deeper than ``dip_ratio`` (about 4.5
  standard deviations for two equal Gaussians) to count as a class.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

MIN_WIDTH = 2.0
MIN_SEPARATION = 1.25
MIN_STATE_PARTICLES = 100  # a state's own PCA is tried for motions when it holds at least this many particles


@dataclass
class States:
    """Discrete states of z (N, zdim): labels (N,) (0 = most populous), means (S, zdim), counts (S,), the real
    particle nearest each mean (S,), the BIC-chosen mixture size and its BIC curve (k = 1..k_max), stability."""

    labels: np.ndarray
    means: np.ndarray
    counts: np.ndarray
    centers_ind: np.ndarray
    n_components: int
    bic: list[float]
    stability: float

    @property
    def n(self) -> int:
        return len(self.counts)


@dataclass
class MotionCandidate:
    """Within-state PC ``index`` (1-based): direction (zdim,), share of the within-state variance, std ratio to the
    later PCs, number of modes of its scores, the latent trajectory (T, zdim) from the 5th to the 95th percentile
    anchored at the most populous state's mean; ``state``: None for the pooled within-state PCA, s for the PCA of
    state s's particles alone (the trajectory then anchored at its mean); ``end_shift`` (Å) and ``is_motion`` are
    set by :func:`decide`; ``amplitude_change`` (the share of the amplitude changed between the trajectory's ends)
    by the caller that measures the ends (``analysis.discovery``)."""

    index: int
    direction: np.ndarray
    variance_ratio: float
    width_ratio: float
    separation: float
    modes: int
    trajectory: np.ndarray
    end_shift: float | None = None
    is_motion: bool = False
    state: int | None = None
    amplitude_change: float | None = None

    @property
    def stands_out(self) -> bool:
        """Wide against the later PCs and set apart from its neighbours (see the module docstring)."""
        return self.width_ratio >= MIN_WIDTH and self.separation >= MIN_SEPARATION

    @property
    def name(self) -> str:
        """How the report names its axis: "PCk" (pooled) or "PCk of state s"."""
        return f"PC{self.index}" if self.state is None else f"PC{self.index} of state {self.state}"


@dataclass
class Structure:
    states: States
    candidates: list[MotionCandidate] = field(default_factory=list)


def _fit_rows(n: int, max_fit: int, seed: int) -> np.ndarray:
    return np.arange(n) if n <= max_fit else np.sort(np.random.default_rng(seed).permutation(n)[:max_fit])


def _mixture(x: np.ndarray, k: int, seed: int):
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(k, covariance_type="full", n_init=2, random_state=seed, reg_covar=1e-4,
                           max_iter=300).fit(x)


def _dip_ratios(gmm, n_steps: int = 41) -> np.ndarray:
    """(K, K): lowest mixture density on the segment between two component means over the lower end's density."""
    means = gmm.means_
    k = len(means)
    ratio = np.ones((k, k))
    t = np.linspace(0.0, 1.0, n_steps)[:, None]
    for i in range(k):
        for j in range(i + 1, k):
            logd = gmm.score_samples(means[i] + t * (means[j] - means[i]))
            ratio[i, j] = ratio[j, i] = float(np.exp(logd.min() - min(logd[0], logd[-1])))
    return ratio


def _merge_components(gmm, resp: np.ndarray, dip_ratio: float, min_fraction: float) -> np.ndarray:
    """Group the mixture's components into states -> labels (n,) from responsibilities resp (n, K)."""
    ratio = _dip_ratios(gmm)
    k = len(ratio)
    group = np.arange(k)
    for i in range(k):  # union of components with no valley between them
        for j in range(i + 1, k):
            if ratio[i, j] >= dip_ratio and group[i] != group[j]:
                group[group == group[j]] = group[i]
    while True:  # states below min_fraction join the group they are most connected to
        post = np.stack([resp[:, group == g].sum(1) for g in np.unique(group)], 1)
        ids = np.unique(group)
        frac = post.mean(0)
        small = int(np.argmin(frac))
        if len(ids) == 1 or frac[small] >= min_fraction:
            break
        members = group == ids[small]
        link = [ratio[np.ix_(members, group == g)].max() if g != ids[small] else -1.0 for g in ids]
        group[members] = ids[int(np.argmax(link))]
    ids = np.unique(group)
    post = np.stack([resp[:, group == g].sum(1) for g in ids], 1)
    return np.argmax(post, 1)


def _one_restart(z: np.ndarray, fit: np.ndarray, k_max: int, seed: int, dip_ratio: float,
                 min_fraction: float) -> tuple[np.ndarray, int, list[float]]:
    """BIC choice of the mixture size on z[fit], then merged states for all rows -> (labels, k, BIC curve)."""
    x = z[fit]
    k_top = max(1, min(k_max, len(x) // max(10, 2 * z.shape[1])))
    fits = [_mixture(x, k, seed) for k in range(1, k_top + 1)]
    bic = [float(g.bic(x)) for g in fits]
    gmm = fits[int(np.argmin(bic))]
    labels = _merge_components(gmm, gmm.predict_proba(z), dip_ratio, min_fraction)
    return labels, gmm.n_components, bic


def _whiten(z: np.ndarray) -> np.ndarray:
    """z (N, zdim) in its principal axes, each scaled to unit variance. A full-covariance mixture's likelihood and
    BIC do not change under this affine map, but its k-means start no longer splits only along the widest
    direction, so a state in a low-variance direction is found beside a wide motion."""
    c = z - z.mean(0)
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    sd = s / np.sqrt(max(len(z) - 1, 1))
    return (c @ vt.T) / np.maximum(sd, 1e-6 * max(float(sd.max()), 1e-30))


def find_states(z: np.ndarray, k_max: int = 8, min_fraction: float = 0.03, dip_ratio: float = 0.2,
                n_restarts: int = 3, seed: int = 0, max_fit: int = 10_000) -> States:
    """Discrete states of z (N, zdim) (see the module docstring). The mixture is fitted on at most ``max_fit``
    particles and every particle is then assigned."""
    from sklearn.metrics import adjusted_rand_score
    from threadpoolctl import threadpool_limits

    z = np.asarray(z, np.float64)
    zs = _whiten(z)
    runs = []
    with threadpool_limits(limits=1):
        for r in range(max(1, n_restarts)):
            runs.append(_one_restart(zs, _fit_rows(len(z), max_fit, seed + r), k_max, seed + r, dip_ratio,
                                     min_fraction))
    sizes = [int(lab.max()) + 1 for lab, _, _ in runs]
    common = Counter(sizes).most_common()
    best_size = min(s for s, c in common if c == common[0][1])
    pick = sizes.index(best_size)
    labels, n_comp, bic = runs[pick]
    others = [adjusted_rand_score(labels, lab) for i, (lab, _, _) in enumerate(runs) if i != pick]
    stability = float(np.mean(others)) if others else 1.0
    counts = np.bincount(labels, minlength=best_size)
    order = np.argsort(-counts, kind="stable")
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    labels = remap[labels]
    counts = counts[order]
    means = np.stack([z[labels == s].mean(0) for s in range(len(counts))])
    ind = np.array([np.flatnonzero(labels == s)[np.argmin(((z[labels == s] - means[s]) ** 2).sum(1))]
                    for s in range(len(counts))], np.int64)
    log.debug("mixture: BIC chose %d components, merged into %d states %s (stability %.2f)", n_comp,
             len(counts), counts.tolist(), stability)
    return States(labels.astype(np.int64), means, counts, ind, int(n_comp), bic, stability)


def count_modes(x: np.ndarray, seed: int = 0, max_fit: int = 5000) -> int:
    """Number of density modes of 1-D values x (N,) (mixture by BIC, components without a valley merged)."""
    x = np.asarray(x, np.float64).reshape(-1, 1)
    return find_states(x, k_max=5, n_restarts=1, seed=seed, max_fit=max_fit).n


def amplitude_groups(rel_amp: np.ndarray, min_change: float = 0.1, n_components: int = 5,
                     seed: int = 0) -> dict:
    """Discrete states of the amplitude channel: a part that is present in some particles and absent in others
    makes its Gaussians' amplitudes bimodal.

    rel_amp (S, G): each sampled particle's decoded amplitudes over the base cloud's. The Gaussians whose relative
    amplitude varies (standard deviation over the sample >= ``min_change``) are reduced to their first
    ``n_components`` principal components and grouped by :func:`find_states`. Returns ``labels`` (S,) and a
    JSON-ready ``summary`` (variable Gaussians, groups, their counts, each group's mean relative amplitude of the
    variable Gaussians).
    """
    from sklearn.decomposition import PCA

    rel = np.asarray(rel_amp, np.float64)
    variable = np.flatnonzero(rel.std(0) >= min_change)
    labels = np.zeros(len(rel), np.int64)
    summary = {"n_particles": int(len(rel)), "variable_gaussians": int(len(variable)), "n_groups": 1,
               "counts": [int(len(rel))], "mean_relative_amplitude": []}
    if len(variable) == 0 or len(rel) < 20:
        return {"labels": labels, "summary": summary}
    x = rel[:, variable]
    k = max(1, min(n_components, len(variable), len(rel) - 1))
    scores = PCA(n_components=k).fit_transform(x)
    st = find_states(scores, k_max=5, n_restarts=2, seed=seed)
    summary.update(n_groups=st.n, counts=st.counts.tolist(), stability=round(st.stability, 4),
                   mean_relative_amplitude=[round(float(x[st.labels == g].mean()), 3) for g in range(st.n)])
    return {"labels": st.labels, "summary": summary}


def motion_candidates(
    z: np.ndarray, states: States, n_pcs: int = 3, n_points: int = 10, seed: int = 0,
) -> list[MotionCandidate]:
    """Within-state PCs 1..n_pcs of z (N, zdim), each with its trajectory (n_points, zdim) from the 5th to the
    95th percentile of its scores, anchored at the most populous state's mean."""
    z = np.asarray(z, np.float64)
    return _pc_candidates(z - states.means[states.labels], states.means[0], n_pcs, n_points, seed)


def state_candidates(z: np.ndarray, states: States, n_pcs: int = 3, n_points: int = 10,
                     seed: int = 0) -> Iterator[list[MotionCandidate]]:
    """For each state of at least ``MIN_STATE_PARTICLES`` (most populous first), the PCs 1..n_pcs of its own
    particles' z as motion candidates, trajectories anchored at its mean."""
    z = np.asarray(z, np.float64)
    for s in range(states.n):
        if states.counts[s] >= MIN_STATE_PARTICLES:
            yield _pc_candidates(z[states.labels == s] - states.means[s], states.means[s], n_pcs, n_points, seed, s)


def find_motions(z: np.ndarray, found: Structure, shifts_of: Callable[[list[MotionCandidate]], dict | None],
                 min_shift: float = 1.0, n_pcs: int = 3, n_points: int = 10,
                 seed: int = 0) -> tuple[Structure, dict]:
    """:func:`decide` on the pooled within-state candidates of ``found``; where none is a motion and there are
    several states, on each state's own candidates in turn (:func:`state_candidates`), keeping the first state
    with a motion (see the module docstring). ``shifts_of(candidates)``: their ends' displacements, as ``decide``'s
    ``end_shifts`` (None: not checked). Returns the structure decided on and the decision."""
    decision = decide(found, shifts_of(found.candidates), min_shift)
    if found.states.n > 1 and not any(c.is_motion for c in found.candidates):
        for own in state_candidates(z, found.states, n_pcs, n_points, seed):
            trial = Structure(found.states, own)
            trial_decision = decide(trial, shifts_of(own), min_shift)
            if any(c.is_motion for c in own):
                return trial, trial_decision
    return found, decision


def _pc_candidates(resid: np.ndarray, anchor: np.ndarray, n_pcs: int, n_points: int, seed: int,
                   state: int | None = None) -> list[MotionCandidate]:
    """The PCs 1..n_pcs of residuals (N, zdim) as motion candidates, trajectories anchored at ``anchor`` (zdim,)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(resid.shape[1], len(resid))).fit(resid)
    scores = pca.transform(resid)
    sd = scores.std(0)
    out = []
    for k in range(min(n_pcs, pca.n_components_)):
        later = sd[k + 1:]
        if len(later):
            width = float(sd[k] / max(np.median(later), 1e-12))
        else:  # the last PC: nothing to be wide against, unless it is the only one
            width = float("inf") if resid.shape[1] == 1 else 0.0
        ratios = [sd[k] / max(sd[k + 1], 1e-12)] if k + 1 < len(sd) else []
        ratios += [sd[k - 1] / max(sd[k], 1e-12)] if k > 0 else []
        lo, hi = np.percentile(scores[:, k], [5.0, 95.0])
        traj = anchor + np.linspace(lo, hi, n_points)[:, None] * pca.components_[k][None]
        c = MotionCandidate(k + 1, pca.components_[k].copy(), float(pca.explained_variance_ratio_[k]), width,
                            float(min(ratios, default=float("inf"))), 0, traj, state=state)
        c.modes = count_modes(scores[:, k], seed) if c.stands_out else 0
        out.append(c)
    return out


def find_structure(z: np.ndarray, n_pcs: int = 3, n_points: int = 10, seed: int = 0, **state_kw) -> Structure:
    """States and motion candidates of z (N, zdim)."""
    states = find_states(z, seed=seed, **state_kw)
    return Structure(states, motion_candidates(z, states, n_pcs, n_points, seed=seed))


def decide(structure: Structure, end_shifts: dict[int, float] | None = None, min_shift: float = 1.0,
           min_stability: float = 0.8) -> dict:
    """The statement the report makes, and its evidence (JSON-ready).

    A candidate is a motion when it stands out, is unimodal and (when ``end_shifts`` gives its ends' displacement, Å)
    moves its trajectory's ends by at least ``min_shift``. Returns ``statement`` and ``classes``/``motions``.
    """
    st = structure.states
    motions = []
    for c in structure.candidates:
        c.end_shift = None if end_shifts is None else end_shifts.get(c.index)
        moved = c.end_shift is None or c.end_shift >= min_shift
        c.is_motion = bool(c.stands_out and c.modes == 1 and moved)
        motions.append({"pc": c.index, "state": c.state, "variance_ratio": round(c.variance_ratio, 4),
                        "width_ratio": round(min(c.width_ratio, 1e6), 3),
                        "separation": round(min(c.separation, 1e6), 3), "modes": c.modes,
                        "end_shift_angstrom": None if c.end_shift is None else round(float(c.end_shift), 3),
                        "is_motion": c.is_motion})
    own = structure.candidates[0].state if structure.candidates else None
    pc_name = "within-state PC" if st.n > 1 and own is None else "PC" if own is None else f"PC of state {own}"
    parts = []
    if st.n > 1:
        counts = ", ".join(f"{int(c):,}" for c in st.counts)
        parts.append(f"{st.n} classes ({counts} particles)")
        if st.stability < min_stability:
            parts[-1] += f", unstable between restarts (agreement {st.stability:.2f})"
    else:
        parts.append("no discrete classes")
    found = [(f"within-state {c.name}" if st.n > 1 and c.state is None else c.name)
             for c in structure.candidates if c.is_motion]
    if found:
        parts.append(f"a continuous motion along {found[0]}" if len(found) == 1
                     else "continuous motions along " + " and ".join(found))
    else:
        parts.append("no continuous motion")
    return {"statement": "; ".join(parts), "n_classes": st.n,
            "classes": {"counts": st.counts.tolist(), "centers_ind": st.centers_ind.tolist(),
                        "mixture_components": st.n_components, "bic": [round(b, 2) for b in st.bic],
                        "stability": round(st.stability, 4)},
            "motion_axis": pc_name, "motions": motions}
