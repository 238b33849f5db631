"""Does a run's latent encode the viewing direction? (session 24 diagnostic, the box-64 CPU toy of session 23)

    python benchmarks/results/2026-12-07-s24-cpu-toys/pose_probe.py RUN_DIR EPOCH SIM_DIR [DISPLACEMENT_DIMS]

5-fold R² of a ridge and a 20-nearest-neighbour regression from z.EPOCH.npy (all of z, the latent split's
displacement dimensions, its amplitude dimensions) to each particle's projection direction (the third row of its
rotation from the simulation's particles.star, RELION ZYZ Euler angles). Prints one markdown row per part.
"""

import sys

import numpy as np
import starfile
from scipy.spatial.transform import Rotation
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsRegressor

run, epoch, sim = sys.argv[1], sys.argv[2], sys.argv[3]
n_disp = int(sys.argv[4]) if len(sys.argv) > 4 else 3
star = starfile.read(f"{sim}/particles.star")
table = star["particles"] if isinstance(star, dict) else star
angles = table[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()
view = Rotation.from_euler("ZYZ", np.deg2rad(angles)).as_matrix()[:, 2, :]
z = np.load(f"{run}/z.{epoch}.npy")
for part, values in (("all", z), ("displacement", z[:, :n_disp]), ("amplitude", z[:, n_disp:])):
    r2 = [cross_val_score(m, values, view, cv=5, scoring="r2").mean()
          for m in (Ridge(alpha=1e-3), KNeighborsRegressor(n_neighbors=20))]
    print(f"| {run} | {epoch} | {part} | {r2[0]:.3f} | {r2[1]:.3f} |")
