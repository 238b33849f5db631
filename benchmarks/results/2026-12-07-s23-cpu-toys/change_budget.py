"""How a trained run draws each particle's change: amplitude against displacement (session 23 diagnostic, CPU toy):

    python benchmarks/results/2026-12-07-s23-cpu-toys/change_budget.py RUN_DIR EPOCH [N]

For N particles' latents (posterior means, z.EPOCH.npy), averaged over the particles: the share of the base's total
amplitude moved (sum abs(amp - base) / sum base, the amplitude-weighted mean of abs(amp / base - 1)) and the RMS
displacement (Å, amplitude-weighted). Prints one Markdown row: run, epoch, mode, share moved, RMS displacement.
On adk, which has no states, an amplitude change only fakes the motion (a cross-fade) or fits noise.
"""

import sys

import numpy as np
import torch

from gaussianem.model.load import load_model

run, epoch = sys.argv[1], int(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 500
model, _, _ = load_model(run, epoch)
model.eval().requires_grad_(False)
base = model.base_cloud
z = torch.as_tensor(np.load(f"{run}/z.{epoch}.npy")[:n], dtype=torch.float32)
pos, _, amp = model.decode(z)
w = base.amplitudes.float()[None].clamp_min(0)
moved = (amp - base.amplitudes.float()[None]).abs().sum(1) / base.amplitudes.float().sum()
disp = ((pos - base.positions.float()[None]).pow(2).sum(-1) * w).sum(1) / w.sum(1)
print(f"| {run} | {epoch} | {model.spec.amplitude_change} | {float(moved.mean()):.4f} | "
      f"{float(disp.sqrt().mean()):.3f} |")
