"""Readers: RELION ``.star``, cryoSPARC ``.cs`` or a bare ``.mrcs``/``.mrc``/``.txt`` stack with cryoDRGN /
GaussianEM-original poses and CTF -> :class:`SourceData` (image references, poses as RELION ``A`` + origins in Å,
CTF, per-particle pixel size), validated: counts, columns, stacks, indices, finite values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaussianem.errors import InputError
from gaussianem.io import cryodrgn, cryosparc, star
from gaussianem.io.checks import check_ctf
from gaussianem.io.files import existing_file
from gaussianem.io.particles import ParticleImages
from gaussianem.preprocess.config import PreprocessConfig

log = logging.getLogger(__name__)


@dataclass
class SourceData:
    """Everything read from the input, one row per input particle (N)."""

    kind: str
    path: Path
    images: ParticleImages
    pixel_size: np.ndarray  # (N,) Å
    rotation: np.ndarray  # (N, 3, 3) RELION A
    shift_angstrom: np.ndarray  # (N, 2) RELION origins in Å
    ctf: dict[str, np.ndarray] | None  # each (N,)
    passthrough: list[str] = field(default_factory=list)  # cryoSPARC files joined to the source by uid
    rows: np.ndarray | None = None  # the input rows kept by --ind (None: all, in order)
    pixel_size_from: str = "metadata"  # or "--input-apix", "MRC headers": where ``pixel_size`` came from

    @property
    def n(self) -> int:
        return len(self.images)


def _check_count(what: dict[str, int], source: Path) -> None:
    if len(set(what.values())) > 1:
        raise InputError(f"{source}: count mismatch between " + ", ".join(f"{k} ({v})" for k, v in what.items()))


def _pixel_sizes_or_header(apix: np.ndarray | None, images: ParticleImages, fallback: float | None,
                           source: Path) -> np.ndarray:
    """Pixel sizes (N,) Å: the metadata's, else ``--input-apix``, else the stacks' MRC headers."""
    if apix is None:
        header = images.header_pixel_sizes
        if fallback is not None:
            apix = np.full(len(images), float(fallback))
        elif (header > 0).all():
            log.warning("%s: no pixel size in the metadata: using the stacks' MRC headers (%s Å)",
                        source, ", ".join(f"{v:g}" for v in np.unique(header)[:4]))
            apix = header.astype(np.float64)
        else:
            raise InputError(f"{source}: the pixel size is needed but absent (not in the metadata nor the stack "
                             "headers); give --input-apix")
    apix = np.asarray(apix, np.float64)
    if not (np.isfinite(apix).all() and (apix > 0).all()):
        raise InputError(f"{source}: invalid pixel size(s) {np.unique(apix[~(apix > 0)])[:3].tolist()}")
    return apix


def _pixel_size_from(metadata: np.ndarray | None, cfg: PreprocessConfig) -> str:
    """Where :func:`_pixel_sizes_or_header` takes the pixel size from (for messages about a wrong one)."""
    if metadata is not None:
        return "metadata"
    return "--input-apix" if cfg.input_apix is not None else "MRC headers"


def _check_bare_names(df, images: ParticleImages, path: Path) -> None:
    """A name without ``@`` must be a single-image file: in a stack it would silently mean the first image."""
    bare = ~df["rlnImageName"].astype(str).str.contains("@", regex=False).to_numpy()
    if not bare.any():
        return
    sizes = np.array([info.n for info in images.infos])[images.file_id]
    stack = np.flatnonzero(bare & (sizes > 1))
    if len(stack):
        raise InputError(f"{path}: rlnImageName must be INDEX@STACK for a stack; {len(stack)} row(s) name a stack of "
                         f"several images without '@', e.g. row {int(stack[0])}: "
                         f"{df['rlnImageName'].iloc[stack[0]]!r}")


def _refuse_twice(df, columns: tuple[str, ...], given: Path | None, flag: str, what: str, path: Path) -> None:
    """A star that carries ``what`` (any of ``columns``) and a file given for the same by ``flag``: refused."""
    present = [c for c in columns if c in df.columns]
    if given is not None and present:
        raise InputError(f"{path.name} carries its own {what} ({', '.join(present)}) and {flag} {Path(given).name} "
                         f"gives them again: drop {flag}, or remove those columns from the star file")


def _file_ctf(ctf_path: Path, images: ParticleImages, path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``--ctf`` (cryoDRGN pkl / ctf.npy, N×9) for ``images`` -> (CTF dict (N,) each, pixel size (N,) Å of the
    images: the file's (D, Apix) describe the same field of view as the stack, maybe at another sampling)."""
    ctf, ctf_box, ctf_apix = cryodrgn.read_ctf(ctf_path)
    check_ctf(ctf, ctf_path)
    _check_count({"images": len(images), f"CTF rows in {Path(ctf_path).name}": len(ctf_box)}, path)
    return ctf, ctf_apix * ctf_box / images.box_sizes


def _star_source(cfg: PreprocessConfig, path: Path, datadir: Path | None) -> SourceData:
    """A RELION star; ``--poses``/``--ctf`` supply what it lacks (refused when it carries them itself)."""
    st = star.read_star(path)
    df = st.merged()
    _refuse_twice(df, star.ANGLES, cfg.poses, "--poses", "poses", path)
    _refuse_twice(df, ("rlnDefocusU", "rlnDefocusV"), cfg.ctf, "--ctf", "CTF", path)
    index, names = star.image_names(df, path)
    images = ParticleImages.from_names(names, index, path, datadir)
    _check_bare_names(df, images, path)
    apix = star.pixel_size(df, path)
    ctf = None
    if cfg.ctf is not None:
        ctf, ctf_apix = _file_ctf(cfg.ctf, images, path)
        apix = ctf_apix if apix is None else apix
    origin = _pixel_size_from(apix, cfg)
    apix = _pixel_sizes_or_header(apix, images, cfg.input_apix, path)
    if cfg.poses is not None:
        rotation, shift = cryodrgn.read_poses(cfg.poses, images.box_sizes, apix, len(images))
    elif not any(c in df.columns for c in star.ANGLES):
        raise InputError(f"{path}: no poses (rlnAngleRot/Tilt/Psi are absent): give them with --poses POSES.pkl "
                         "(cryoDRGN pose pickle)")
    else:
        rotation, shift = star.poses(df, apix, path)
    if cfg.ctf is None:
        ctf = star.ctf(df, path)
    return SourceData(f"relion-{st.version}", path, images, apix, rotation, shift, ctf, pixel_size_from=origin)


def load_source(cfg: PreprocessConfig) -> SourceData:
    """Read a ``.star``, ``.cs``, or ``.mrcs``/``.mrc``/``.txt`` (+ ``--poses``/``--ctf``) input."""
    path = existing_file(Path(cfg.particles))
    suffix = path.suffix.lower()
    datadir = Path(cfg.datadir) if cfg.datadir is not None else None
    if datadir is not None and not datadir.is_dir():
        raise InputError(f"--datadir {datadir} is not a folder")
    if cfg.passthrough and suffix != ".cs":
        raise InputError(f"--passthrough joins cryoSPARC .cs files; {path.name} is not one")
    for extra in cfg.passthrough or []:
        existing_file(extra, "--passthrough: file")
    if suffix == ".cs" and (cfg.poses is not None or cfg.ctf is not None):
        raise InputError(f"--poses/--ctf apply to .mrcs/.txt stacks and to .star files without poses/CTF; "
                         f"{path.name} carries its own poses and CTF")
    if suffix == ".star":
        return _star_source(cfg, path, datadir)
    if suffix == ".cs":
        cs, joined = cryosparc.read_cs_with_passthrough(path, cfg.passthrough)
        index, names = cryosparc.blob_paths(cs, path)
        images = ParticleImages.from_names(names, index, path, datadir)
        meta = cryosparc.pixel_size(cs)
        apix = _pixel_sizes_or_header(meta, images, cfg.input_apix, path)
        rotation, shift = cryosparc.poses(cs, path)
        return SourceData("cryosparc", path, images, apix, rotation, shift, cryosparc.ctf(cs, path),
                          [str(Path(j).resolve()) for j in joined], pixel_size_from=_pixel_size_from(meta, cfg))
    if suffix in (".mrcs", ".mrc", ".txt"):
        files = cryodrgn.read_txt_list(path) if suffix == ".txt" else [path]
        images = ParticleImages.from_stacks(files)
        if cfg.poses is None:
            raise InputError(f"{path.name} is a bare stack: give its poses with --poses (cryoDRGN pose .pkl or "
                             "GaussianEM poses.npy)")
        ctf = apix = None
        if cfg.ctf is not None:
            ctf, apix = _file_ctf(cfg.ctf, images, path)
        origin = _pixel_size_from(apix, cfg)
        apix = _pixel_sizes_or_header(apix, images, cfg.input_apix, path)
        rotation, shift = cryodrgn.read_poses(cfg.poses, images.box_sizes, apix, len(images))
        kind = "gaussianem-npy" if Path(cfg.poses).suffix == ".npy" else "cryodrgn"
        return SourceData(kind, path, images, apix, rotation, shift, ctf, pixel_size_from=origin)
    raise InputError(f"{path}: unknown particle input (expected .star, .cs, .mrcs, .mrc or .txt)")


def check_source(src: SourceData) -> None:
    """Counts agree between images, poses and CTF; poses, B-factors and CTF scale factors are finite (scales > 0)."""
    counts = {"images": src.n, "poses": len(src.rotation)}
    if src.ctf is not None:
        counts["CTF rows"] = len(src.ctf["defocus_u_angstrom"])
    _check_count(counts, src.path)
    if src.ctf is not None and "bfactor" in src.ctf:
        b = src.ctf["bfactor"]
        if not np.isfinite(b).all():
            raise InputError(f"{src.path}: the CTF B-factors hold non-finite values")
        log.info("CTF B-factors from the input kept in ctf.npz (%.4g to %.4g Å²)", float(b.min()), float(b.max()))
    if src.ctf is not None and "scale" in src.ctf:
        sc = src.ctf["scale"]
        if not (np.isfinite(sc).all() and (sc > 0).all()):
            raise InputError(f"{src.path}: the CTF scale factors must be finite and positive")
        log.info("CTF scale factors from the input kept in ctf.npz (%.4g to %.4g)", float(sc.min()), float(sc.max()))
    if not np.isfinite(src.rotation).all() or not np.isfinite(src.shift_angstrom).all():
        raise InputError(f"{src.path}: poses hold non-finite values")
    check_ctf(src.ctf, src.path)  # finite and physical, before any work
