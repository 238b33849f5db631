"""``select``: write a particle subset back as the source's own format, with the source rows intact.

- From a dataset folder, indices refer to dataset particles and go through ``source_index.npy`` to rows of the
  source named in ``dataset.json`` (``source_path``); from a star/cs file directly, indices are its rows.
- A star subset keeps every column of the particle table, the optics table and every other block unchanged,
  including the original (relative) image paths; a cs subset keeps every field.
- Index files: ``.npy``, ``.txt`` (whitespace/comma separated integers), ``.pkl`` (cryoDRGN ``--ind``).
  Label files (one label per dataset particle): ``.npy``, ``.txt``, ``.pkl`` (cryoDRGN ``labels.pkl``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gaussianem.errors import InputError
from gaussianem.io import cryosparc, star
from gaussianem.io.dataset import MANIFEST, SOURCE_INDEX, read_json
from gaussianem.io.files import existing_file
from gaussianem.io.pickles import load_pickle

log = logging.getLogger(__name__)


def read_integers(path: str | Path, what: str) -> np.ndarray:
    """Integers (N,) from a .npy, .txt or .pkl file."""
    path = existing_file(path)
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif path.suffix == ".pkl":
            arr = load_pickle(path, what)
        else:
            arr = np.array(path.read_text().replace(",", " ").split(), dtype=np.float64)
        arr = np.asarray(arr).reshape(-1)
        if arr.dtype.hasobject or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InputError(f"{path}: {what} must be integers, got {arr.dtype} values")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot read {what} ({type(exc).__name__}: {exc})") from exc
    if arr.size and not np.all(np.asarray(arr, np.float64) == np.round(np.asarray(arr, np.float64))):
        raise InputError(f"{path}: {what} must be integers")
    return np.asarray(arr, np.int64)


def indices_from_labels(labels: np.ndarray, classes: list[int]) -> np.ndarray:
    """Particles whose label is one of ``classes`` (sorted indices)."""
    found = set(np.unique(labels).tolist())
    missing = [c for c in classes if c not in found]
    if missing:
        log.warning("classes %s hold no particles", missing)
    return np.nonzero(np.isin(labels, classes))[0]


def resolve_source(path: str | Path) -> tuple[Path, np.ndarray | None, int | None]:
    """(source file, source_index or None, n dataset particles or None) for a dataset folder or a source file."""
    path = Path(path)
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise InputError(f"{path} is not a GaussianEM dataset folder (no {MANIFEST})")
        manifest = read_json(path / MANIFEST)
        src = Path(manifest.get("source_path", ""))
        kind = manifest.get("source_kind", "")
        if not (kind.startswith("relion") or kind == "cryosparc"):
            raise InputError(f"{path}: its source is a {kind or 'unknown'} input; select writes .star or .cs "
                             "subsets of RELION/cryoSPARC sources only")
        if not src.is_file():
            raise InputError(f"{path}: its source file {src} is missing")
        try:
            index = np.load(path / SOURCE_INDEX, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"{path / SOURCE_INDEX}: unreadable ({type(exc).__name__}: {exc})") from None
        return src, index, int(manifest["n_particles"])
    return existing_file(path), None, None


def select(source: str | Path, output: str | Path, indices: np.ndarray | None = None,
           labels: np.ndarray | None = None, classes: list[int] | None = None) -> int:
    """Write the chosen particles of ``source`` (dataset folder or .star/.cs) to ``output``; returns the count."""
    src, source_index, n_dataset = resolve_source(source)
    output = Path(output)
    kind = src.suffix.lower()
    if kind not in (".star", ".cs"):
        raise InputError(f"{src}: select writes subsets of .star or .cs files, not {kind}")
    if output.suffix.lower() != kind:
        raise InputError(f"the source is a {kind} file: the output must end in {kind} (got {output.name})")
    table = star.read_star(src) if kind == ".star" else cryosparc.read_cs(src)
    n_rows = len(table)
    n_items = n_dataset if n_dataset is not None else n_rows
    if (indices is None) == (labels is None):
        raise InputError("give exactly one of --indices or --labels")
    if labels is not None:
        if not classes:
            raise InputError("--labels needs --classes")
        if len(labels) != n_items:
            raise InputError(f"{len(labels)} labels but {n_items} particles")
        indices = indices_from_labels(labels, classes)
    indices = np.asarray(indices, np.int64)
    bad = (indices < 0) | (indices >= n_items)
    if bad.any():
        raise InputError(f"{int(bad.sum())} index(es) out of range [0, {n_items}), e.g. {int(indices[bad][0])}")
    if len(np.unique(indices)) != len(indices):
        raise InputError("the indices hold duplicates")
    if len(indices) == 0:
        raise InputError("the selection is empty")
    rows = source_index[indices] if source_index is not None else indices
    if source_index is not None and (rows >= n_rows).any():
        raise InputError(f"{src} has {n_rows} rows but the dataset refers to row {int(rows.max())}: the source "
                         "changed since preprocessing")
    if kind == ".star":
        blocks = dict(table.blocks)
        blocks[table.particles_key] = table.particles.iloc[rows].reset_index(drop=True)
        star.write_star(output, blocks)
        if output.resolve().parent != src.resolve().parent:
            log.info("image paths are written as in %s (relative to its project); use --datadir when reading %s",
                     src, output)
    else:
        cryosparc.write_cs(output, table[rows])
    log.info("wrote %d of %d particles to %s", len(rows), n_rows, output)
    return len(rows)


def write_index_pkl(dataset: str | Path, output: str | Path, indices: np.ndarray) -> int:
    """Write the chosen dataset particles as a cryoDRGN index file (``--ind``): a pickled int64 array of their rows
    in the source named in the dataset's manifest (``source_index.npy``), so it applies to that original stack.
    Returns the count."""
    from gaussianem.io.writes import save_pickle_atomic

    dataset, output = Path(dataset), Path(output)
    if not (dataset / MANIFEST).is_file():
        raise InputError(f"{dataset} is not a GaussianEM dataset folder (no {MANIFEST})")
    n = int(read_json(dataset / MANIFEST)["n_particles"])
    indices = np.asarray(indices, np.int64)
    if len(indices) == 0:
        raise InputError("the selection is empty")
    if ((indices < 0) | (indices >= n)).any() or len(np.unique(indices)) != len(indices):
        raise InputError(f"indices must be distinct and lie in [0, {n})")
    index_file = dataset / SOURCE_INDEX
    rows = np.load(index_file, allow_pickle=False)[indices] if index_file.is_file() else indices
    save_pickle_atomic(output, np.asarray(rows, np.int64))
    log.info("wrote %d source rows (cryoDRGN --ind) to %s", len(rows), output)
    return len(rows)
