"""``preprocess``: RELION / cryoSPARC / cryoDRGN inputs + a consensus map -> a GaussianEM dataset folder.

Pipeline (:func:`preprocess`, in :mod:`.pipeline`):

1. read the source (:mod:`.readers`): images (``idx@path`` over many stacks), poses as RELION ``A`` + origins
   in Å, CTF, per-particle pixel size; validate counts, columns, stacks, indices;
2. plan the working grid (:mod:`.geometry`): output pixel size ``--apix`` or ``apix₀ · D₀ / D'`` (D₀, apix₀
   of the first particle's optics group); every group is Fourier-cropped/padded to
   ``round(D_g · apix_g / apix_out)`` (even, within 1 % pixel-size error) and then centre-cropped/padded in real
   space to ``D'``, so every output particle shares one pixel size. Shifts stay in Å;
3. initial Gaussians from the consensus map resampled to the working pixel size and box (:mod:`.consensus`);
4. the pose/contrast check (:mod:`.pose_check`) on a sample of particles: CTF-filtered projections of the initial
   Gaussians vs the images (normalised cross-correlation in a soft circular mask) for both contrast signs, plus a
   baseline with the poses shuffled within the sample;
5. one chunked pass over the particles (:mod:`.writer`, tqdm bar): read, check finiteness, resample, flip if the
   data are dark, write into ``particles.mrcs`` by positioned writes (the file is created with
   ``mrcfile.new_mmap``), accumulate image statistics;
6. poses, CTF, source index, PLY, manifest. Everything is written into a hidden temporary folder beside OUTDIR
   and renamed into place at the end: an error leaves nothing half-written.
"""

from gaussianem.preprocess.config import PreprocessConfig

__all__ = ["PreprocessConfig", "preprocess"]


def __getattr__(name: str):
    # the pipeline imports torch; the config alone stays light for the command line's parser
    if name == "preprocess":
        from gaussianem.preprocess.pipeline import preprocess

        return preprocess
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
