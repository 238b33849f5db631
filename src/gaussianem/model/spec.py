"""The sizes and geometry of a :class:`~gaussianem.model.vae.GaussianVAE` (no torch import: the training
configuration takes its model fields and their defaults from here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class ModelOptions:
    """The layer sizes and geometry a user chooses for the model (``gaussianem train`` options).

    The one definition of these fields: :class:`ModelSpec` and the training configuration inherit them.
    """

    zdim: int = 10
    encoder_hidden: int = 1024
    encoder_layers: int = 3
    gaussian_hidden: int = 128
    gaussian_layers: int = 3
    embedding_dim: int = 32
    decoder_hidden: int = 128
    decoder_layers: int = 2
    decoder_features: int = 256
    # decoder_combine: how the decoder's first layer joins the two encoders' outputs (z and a Gaussian's or control
    # point's embedding): "sum" (the split concatenation layer) or "film" (plus a z-dependent gain on the
    # embedding's part; model/decoder.py)
    decoder_combine: str = "sum"
    predict_width: bool = False
    position_scale_angstrom: float = 3.0
    window_radius: float = 0.85
    window_edge: float = 0.15
    projection_chunk: int | None = None
    # encoder_box: the image encoder sees the windowed image area-averaged to this box (None: automatic,
    # resolve_encoder_box; 0: the full box). Its first layer, the largest weight of the model, then holds
    # encoder_box² instead of D² inputs
    encoder_box: int | None = None
    # encoder_centre: the image encoder sees each image translated by its known shift (the particle's centre on the
    # box centre, as cryoDRGN centres its encoder's input), not as recorded; the render loss is unchanged.
    # None: on with the latent split (ModelOptions.resolved_split), off without
    encoder_centre: bool | None = None
    # encoder_split (issue 17): with the latent split, two image encoders of the same size side by side, one for the
    # displacement dimensions of z and one for the amplitude read-out's. With one shared trunk the states' larger
    # gradients crowd the motion out of the latent whenever amplitude changes are on (why the split's amplitudes
    # wait for two displacement-only epochs); with two, amplitudes can be on from the start and the hinge and the
    # states come sooner, but on the GPU per-image FSC-AUC fell 0.004-0.015 (adk 0.335 against 0.348 at 20 epochs:
    # the amplitude part's own encoder fits noise), so it is an option (benchmarks/RESULTS.md,
    # encoder-split-gpu-2026-12-07). None: the loaded model's with --load, else off
    encoder_split: bool | None = None
    # amplitude_encoder_hidden: with encoder_split, the width of the amplitude part's encoder (None: encoder_hidden);
    # a narrower one has less room to fit the noise the two encoders fitted (issue 17 candidate)
    amplitude_encoder_hidden: int | None = None
    # encoder_input: "real" (the windowed image's pixels) or "fourier" (the real and imaginary parts of its
    # orthonormal rfft2 inside the disc of encoder_fourier_radius × Nyquist, as cryoDRGN's encoder sees the
    # Hartley transform): the same information for a full disc, in the basis where each frequency is one input
    encoder_input: str = "real"
    encoder_fourier_radius: float = 1.0
    # decoder: "pair" (the pair MLP on every (particle, Gaussian)) or "control" (the pair MLP on
    # n_control_points control points, interpolated to every Gaussian from its control_neighbours nearest, plus a
    # rank-readout_rank per-Gaussian amplitude read-out: model/control_decoder.py)
    decoder: str = "auto"
    n_control_points: int = 1024
    control_neighbours: int = 8
    readout_rank: int = 32
    # control_embedding (--decoder control): "control" (the Gaussian encoder runs on the K control points' pooled
    # base features: no per-step work over all G Gaussians there) or "gaussians" (on every Gaussian, then pooled)
    control_embedding: str = "control"
    # displacement_dims (--decoder control, issue 17): 0 (every latent dimension drives every change) or N > 0: the
    # first N dimensions of z drive the control points' MLP (the displacements; its amplitude output is off) and
    # the other zdim - N the per-Gaussian amplitude read-out alone, so the states (cheap to draw by fading) and the
    # motions cannot take each other's dimensions. None: SPLIT_DIMS where the decoder resolves to "control", zdim is
    # at least SPLIT_MIN_ZDIM and the read-out is on, else 0 (ModelOptions.resolved_split)
    displacement_dims: int | None = None
    # readout_control (--decoder control, issue 17): the amplitude read-out's per-Gaussian vectors also get a part
    # interpolated from per-control-point vectors, a spatially smooth basis of amplitude changes (what the control
    # points' MLP draws without a latent split). None: on with the latent split, off without
    readout_control: bool | None = None
    # readout_zero (--decoder control, issue 17): which factor of the read-out's product u_g · h(z) starts at zero:
    # "latent" (h's last layer; the per-Gaussian vectors u start random: the default until session 16) or "vectors"
    # (u, and the embedding's map onto it; h's last layer starts random). Either makes the read-out start at zero;
    # with "vectors" a Gaussian's vector only grows where its residual follows h(z), so the Gaussians that no state
    # changes keep no random response to it: per-image FSC-AUC +0.010-0.013 at the GPU runs' scale on the CPU
    # (benchmarks/RESULTS.md, readout-zero-cpu-2026-12-06)
    readout_zero: str = "vectors"
    # amplitude_change (issue 17): how a decoded change Δa sets a Gaussian's amplitude. "log": softplus(raw + Δa),
    # for the small amplitudes of a fitted cloud a factor exp(Δa), so a fading Gaussian's image stops changing long
    # before it is gone, and the latents of images without it drift with each image's information; "signed": base
    # amplitude × (1 + Δa), "linear" the same floored smoothly at zero, "clamp" floored at zero: a part is gone at
    # Δa = -1, so an absent part's latents gather where it is just gone (gaussians.linear_amplitude_factor; measured:
    # the states sooner, an option: benchmarks/RESULTS.md, amplitude-change-gpu-2026-12-07). None: the loaded
    # model's with --load, else "log"
    amplitude_change: str | None = None
    # projector: "dense" (separable, every Gaussian on every pixel), "splat" (tile splat, Triton kernels on CUDA;
    # the dense projector on CPU / float64) or "auto" (splat where its kernel runs, dense elsewhere);
    # splat_cutoff_sigmas: the splat's footprint ±c·σ (skipped values < exp(-c²/2) of a Gaussian's peak).
    # The defaults are the fast paths since their per-image FSC-AUC matched the old ones' on the three presets at
    # box 64 (benchmarks/RESULTS.md, 2026-12-03; docs/FAST_DECODER_AND_SPLAT.md)
    projector: str = "auto"
    splat_cutoff_sigmas: float = 5.0

    def resolved_split(self, n_gaussians: int) -> tuple[int, bool, bool, bool]:
        """The latent split's settings for a cloud of ``n_gaussians``, the automatic ones (None) filled in ->
        (displacement_dims, readout_control, encoder_centre, encoder_split). Unset, the split is on (SPLIT_DIMS
        displacement dimensions, the control points' read-out vectors, the centred encoder input) where it can run:
        the control-point decoder (``decoder`` resolved for this cloud) with an amplitude read-out, and zdim >=
        SPLIT_MIN_ZDIM; the two others follow the split when unset (on with a split that can run, off otherwise);
        ``encoder_split`` is off unless typed."""
        runs = resolve_decoder(self.decoder, n_gaussians, self.n_control_points) == "control" and self.readout_rank > 0
        dims = self.displacement_dims
        if dims is None:
            dims = SPLIT_DIMS if runs and self.zdim >= SPLIT_MIN_ZDIM else 0
        split = runs and dims > 0  # (a typed split where none can run is refused by model_spec)
        return (dims, split if self.readout_control is None else self.readout_control,
                split if self.encoder_centre is None else self.encoder_centre,
                bool(self.encoder_split))

    def option_errors(self) -> list[str]:
        """What is wrong with the decoder / projector choices (empty when nothing is)."""
        errors = []
        if self.decoder not in DECODERS:
            errors.append(f"--decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.projector not in PROJECTORS:
            errors.append(f"--projector must be one of {', '.join(PROJECTORS)}, got {self.projector!r}")
        if self.control_embedding not in CONTROL_EMBEDDINGS:
            errors.append(f"--control-embedding must be one of {', '.join(CONTROL_EMBEDDINGS)}, "
                          f"got {self.control_embedding!r}")
        if min(self.n_control_points, self.control_neighbours) < 1 or self.readout_rank < 0:
            errors.append("--n-control-points and --control-neighbours must be >= 1, --readout-rank >= 0")
        if self.displacement_dims and not 0 < self.displacement_dims < self.zdim:
            errors.append(f"--displacement-dims must be 0 or between 1 and --zdim - 1 ({self.zdim - 1}), "
                          f"got {self.displacement_dims}")
        if self.amplitude_encoder_hidden is not None and self.amplitude_encoder_hidden < 1:
            errors.append(f"--amplitude-encoder-hidden must be >= 1, got {self.amplitude_encoder_hidden}")
        if self.encoder_box is not None and self.encoder_box < 0:
            errors.append(f"--encoder-box must be >= 0 (0: the full box), got {self.encoder_box}")
        if self.decoder_combine not in DECODER_COMBINES:
            errors.append(f"--decoder-combine must be one of {', '.join(DECODER_COMBINES)}, "
                          f"got {self.decoder_combine!r}")
        if self.readout_zero not in READOUT_ZEROS:
            errors.append(f"--readout-zero must be one of {', '.join(READOUT_ZEROS)}, got {self.readout_zero!r}")
        if self.amplitude_change is not None and self.amplitude_change not in AMPLITUDE_CHANGES:
            errors.append(f"--amplitude-change must be one of {', '.join(AMPLITUDE_CHANGES)}, "
                          f"got {self.amplitude_change!r}")
        if self.encoder_input not in ENCODER_INPUTS:
            errors.append(f"--encoder-input must be one of {', '.join(ENCODER_INPUTS)}, got {self.encoder_input!r}")
        if not 0 < self.encoder_fourier_radius <= 1.5:
            errors.append(f"--encoder-fourier-radius must be in (0, 1.5], got {self.encoder_fourier_radius}")
        if not self.splat_cutoff_sigmas > 0:
            errors.append("--splat-cutoff-sigmas must be > 0")
        return errors


DECODERS = ("auto", "control", "pair")
PROJECTORS = ("auto", "dense", "splat")
CONTROL_EMBEDDINGS = ("control", "gaussians")
ENCODER_INPUTS = ("real", "fourier")
DECODER_COMBINES = ("sum", "film")
READOUT_ZEROS = ("latent", "vectors")
AMPLITUDE_CHANGES = ("log", "linear", "clamp", "signed")
AMPLITUDE_CHANGE_DEFAULT = "log"
# the latent split by default (issue 17; benchmarks/RESULTS.md, split-default-gpu-2026-12-06): the first SPLIT_DIMS
# dimensions of z drive the displacements, the others the amplitude read-out, with a centred encoder input and the
# control points' read-out vectors, wherever the control-point decoder runs and zdim >= SPLIT_MIN_ZDIM
SPLIT_DIMS = 3
SPLIT_MIN_ZDIM = 6
# the fields ModelOptions.resolved_split fills in, in its order
SPLIT_FIELDS = ("displacement_dims", "readout_control", "encoder_centre", "encoder_split")
# what a checkpoint written before a field existed meant by it
LEGACY_VALUES = {"decoder": "pair", "projector": "dense", "control_embedding": "gaussians", "encoder_box": 0,
                 "encoder_centre": False, "encoder_input": "real", "encoder_fourier_radius": 1.0,
                 "decoder_combine": "sum", "displacement_dims": 0,
                 "readout_control": False, "readout_zero": "latent", "encoder_split": False,
                 "amplitude_change": "log"}
# --encoder-box auto: boxes above this are area-averaged to it for the image encoder
ENCODER_BOX_AUTO = 64


def resolve_encoder_box(choice: int | None, box_size: int) -> int:
    """The box the image encoder sees: ``choice`` (0: the full box; larger than the box: the full box) or, for None,
    ``min(box_size, ENCODER_BOX_AUTO)``."""
    if choice is None:
        return min(box_size, ENCODER_BOX_AUTO)
    return box_size if choice == 0 else min(choice, box_size)


def resolve_decoder(choice: str, n_gaussians: int, n_control_points: int) -> str:
    """``--decoder auto``: the control-point decoder when the cloud has more Gaussians than control points, else the
    pair decoder (with K = G the control decoder is the pair MLP plus an interpolation: ~30 % slower on the demo's
    472 Gaussians, nothing gained). "pair" and "control" are kept as asked."""
    if choice != "auto":
        return choice
    return "control" if n_gaussians > n_control_points else "pair"


@dataclass(frozen=True, kw_only=True)
class ModelSpec(ModelOptions):
    """Everything needed to rebuild a :class:`GaussianVAE` (sizes, geometry); saved in every checkpoint.

    The user's :class:`ModelOptions` plus what the data fix: the working box and pixel size, the base cloud's
    size and width bounds, the images' standard deviation.
    """

    box_size: int
    pixel_size_angstrom: float
    n_gaussians: int
    width_min: float
    width_max: float
    image_std: float = 1.0

    def __post_init__(self) -> None:
        """A spec is concrete: the latent split's automatic settings (None) are resolved (:meth:`resolved_split`),
        an unset amplitude change is ``AMPLITUDE_CHANGE_DEFAULT``."""
        if None in (self.displacement_dims, self.readout_control, self.encoder_centre, self.encoder_split):
            split = self.resolved_split(self.n_gaussians)
            for name, value in zip(SPLIT_FIELDS, split, strict=True):
                object.__setattr__(self, name, value)
        if self.amplitude_change is None:
            object.__setattr__(self, "amplitude_change", AMPLITUDE_CHANGE_DEFAULT)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelSpec:
        """A saved spec (a checkpoint's ``spec``); fields it predates get the values that older versions used."""
        names = {f.name for f in fields(cls)}
        return cls(**{**LEGACY_VALUES, **{k: v for k, v in values.items() if k in names}})
