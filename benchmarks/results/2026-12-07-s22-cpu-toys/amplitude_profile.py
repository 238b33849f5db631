"""Decoded amplitudes per state and along the state axis (session 22 diagnostic, CPU toy):

    python benchmarks/results/2026-12-07-s22-cpu-toys/amplitude_profile.py RUN_DIR EPOCH SIM_DIR [DISPLACEMENT_DIMS]

Per true state (300 particles' latents): the decoded total amplitude as a multiple of the base cloud's, the share of
Gaussians below 10 % of their base amplitude and below zero, and the gain penalty's term (mean of the log-gain², the
run's mode). Then along PC1 of the amplitude dimensions (the mean latent moved by t along it): the total amplitude
and the share below 10 %. Where a fading part's image stops changing, the latents of the states without it are not
held in place.
"""

import sys

import numpy as np
import torch
from sklearn.decomposition import PCA

from gaussianem.gaussians import amplitude_log_gain
from gaussianem.model.load import load_model

run, epoch, sim = sys.argv[1], int(sys.argv[2]), sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 3
model, _, _ = load_model(run, epoch)
model.eval().requires_grad_(False)
mode = model.spec.amplitude_change
base = model.base_cloud.amplitudes
z = np.load(f"{run}/z.{epoch}.npy")
state = np.load(f"{sim}/truth.npz")["state"]
print(f"{run} epoch {epoch}, --amplitude-change {mode}; base amplitude median {float(base.median()):.4f}")
print("| state | total / base | share < 10 % | share < 0 | mean log-gain² |")
print("| ---: | ---: | ---: | ---: | ---: |")
for k in np.unique(state):
    zk = torch.as_tensor(z[state == k][:300], dtype=torch.float32)
    deltas = model.decode_deltas(zk)
    amp = model.apply_deltas(deltas)[2]
    ratio = amp / base[None]
    gain = float(amplitude_log_gain(deltas[..., 0], mode).pow(2).mean())
    print(f"| {k} | {float(amp.sum(1).mean() / base.sum()):.3f} | {float((ratio < 0.1).float().mean()):.3f} | "
          f"{float((ratio < 0).float().mean()):.3f} | {gain:.4f} |")
pca = PCA().fit(z[:, n:])
mean = z.mean(0)
print("\n| t on PC1 | total / base | share < 10 % |")
print("| ---: | ---: | ---: |")
for t in np.linspace(-18, 18, 13):
    zt = mean.copy()
    zt[n:] = pca.mean_ + t * pca.components_[0]
    amp = model.decode(torch.as_tensor(zt[None], dtype=torch.float32))[2][0]
    print(f"| {t:.0f} | {float(amp.sum() / base.sum()):.3f} | {float((amp / base < 0.1).float().mean()):.3f} |")
