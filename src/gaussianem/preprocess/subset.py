"""``preprocess --ind``: keep only the input particles a cryoDRGN-style index file names."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from gaussianem.io.indices import read_ind
from gaussianem.io.particles import ParticleImages
from gaussianem.preprocess.readers import SourceData

log = logging.getLogger(__name__)


def keep_rows(src: SourceData, ind: Path | None) -> SourceData:
    """``src`` restricted to the rows ``ind`` names (in the file's order; ``rows`` records them for
    ``source_index.npy``); ``src`` itself without ``ind``."""
    if ind is None:
        return src
    rows = read_ind(ind, src.n)
    images = src.images
    subset = ParticleImages(images.files, images.file_id[rows], images.index[rows], images.source)
    ctf = None if src.ctf is None else {k: np.asarray(v)[rows] for k, v in src.ctf.items()}
    log.info("--ind %s: keeping %d of %d particles", ind, len(rows), src.n)
    return dataclasses.replace(src, images=subset, pixel_size=np.asarray(src.pixel_size)[rows],
                               rotation=src.rotation[rows], shift_angstrom=src.shift_angstrom[rows], ctf=ctf,
                               rows=rows)
