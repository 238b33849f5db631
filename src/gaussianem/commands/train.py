"""Train the heterogeneity VAE (two encoders, one decoder) on a dataset folder; writes a run folder."""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import shutil
import sys
from dataclasses import fields
from pathlib import Path

from gaussianem.model.spec import (
    AMPLITUDE_CHANGES,
    DECODER_COMBINES,
    DECODERS,
    ENCODER_INPUTS,
    PROJECTORS,
    READOUT_ZEROS,
)
from gaussianem.training.config import TrainConfig

log = logging.getLogger(__name__)

_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}

# (field, flag type, help) for the options beyond the main ones
_SIZES = [
    ("encoder_hidden", int, "image encoder width"),
    ("encoder_layers", int, "image encoder hidden layers"),
    ("gaussian_hidden", int, "Gaussian encoder width"),
    ("gaussian_layers", int, "Gaussian encoder hidden layers"),
    ("embedding_dim", int, "Gaussian embedding size"),
    ("decoder_hidden", int, "decoder width"),
    ("decoder_layers", int, "decoder hidden layers (the split first layer included)"),
    ("decoder_features", int, "decoder feature layer before the heads"),
    ("position_scale_angstrom", float, "Å per unit of the decoder's position output"),
    ("window_radius", float, "soft window: inner radius (fraction of D/2)"),
    ("window_edge", float, "soft window: cosine edge width (fraction of D/2)"),
    ("encoder_box", int, "the image encoder sees the windowed image area-averaged to this box (0: the full box; "
     "default: the full box up to 64, else 64)"),
    ("projection_chunk", int, "Gaussians per projection chunk (lower to save GPU memory; default: automatic)"),
    ("n_control_points", int, "--decoder control: control points where the pair MLP runs"),
    ("control_neighbours", int, "--decoder control: control points each Gaussian interpolates from"),
    ("readout_rank", int, "--decoder control: rank of the per-Gaussian amplitude read-out (0: none)"),
    ("displacement_dims", int, "--decoder control: the first N latent dimensions drive the displacements, the "
     "others the amplitude read-out alone (0: every dimension drives both; default: 3 where the control-point "
     "decoder runs and --zdim >= 6, else 0: the latent split, with --encoder-centre and --readout-control, "
     "amplitude changes and the end of the KL warm-up after two epochs, the split opened after three)"),
    ("control_embedding", str, "--decoder control: the Gaussian encoder runs on the 'control' points' pooled "
     "features (cost independent of the number of Gaussians) or on all 'gaussians', then pooled"),
    ("splat_cutoff_sigmas", float, "--projector splat: footprint half-width in σ (skipped values < exp(-c²/2) of "
     "a Gaussian's peak)"),
    ("eval_batch_size", int, "batch size of the evaluation (encoding) pass"),
]
_LOSSES = [
    ("kl_weight", float, "weight of the KL term"),
    ("kl_start_weight", float, "KL schedule: this weight for the first --kl-ramp-start of the run, then linear "
     "to --kl-weight at its end (default: --kl-weight throughout; issue 17 candidate)"),
    ("kl_ramp_start", float, "--kl-start-weight: the share of the run before the KL weight starts to rise"),
    ("kl_displacement_scale", float, "with --displacement-dims N: the KL weight of the N displacement dimensions "
     "is this multiple of the amplitude dimensions' (more than 1 keeps an unused displacement dimension "
     "from waking late and fitting noise, but a motion may then be drawn by the amplitudes, fading instead of "
     "moving (the report's \"Structure found\" table then shows a small end shift and a large amplitude change))"),
    ("kl_displacement_scale_start_steps", int, "--kl-displacement-scale applies from this optimizer step on (the "
     "displacement dimensions weighed as the amplitude ones before; default 0: from the start)"),
    ("kl_warmup_steps", int, "KL warm-up: the KL weight rises linearly from 0 at the first step to its value at "
     "this optimizer step (0: none; default: with the latent split, up to the amplitude start (with "
     "--encoder-split two epochs' steps, at most half the run), else 0)"),
    ("knn_weight", float, "weight of the latent kNN term"),
    ("knn_start_epoch", int, "the kNN term is on in epochs after this one"),
    ("knn_sample", int, "latents sampled from the memory bank per step"),
    ("knn_near", int, "nearest sampled latents pulled"),
    ("knn_far", int, "far latents pushed (half of them uniform in the bank's bounding box)"),
    ("smoothness_weight", float, "weight of the embedding smoothness term"),
    ("distance_weight", float, "weight of the neighbour-distance preservation term"),
    ("alignment_weight", float, "weight of the displacement alignment term"),
    ("repulsion_weight", float, "weight of the repulsion term"),
    ("amplitude_weight", float, "weight of the amplitude-change penalty (mean squared pre-activation change)"),
    ("amplitude_gain_weight", float, "weight of the amplitude-gain penalty (the mean squared log of each gain: the "
     "positive pre-activation change with --amplitude-change log, log(1 + Δa⁺) with the others): a state is drawn by "
     "moving Gaussians, not by fading others in; fading out (a missing subunit) is free"),
    ("amplitude_start_epoch", int, "decoded amplitude changes are on in epochs after this one (0: from the start; "
     "> 0: motion is learnt as displacements first)"),
    ("amplitude_start_steps", int, "decoded amplitude changes are on once this many optimizer steps have run (with "
     "--amplitude-start-epoch: once both have passed; default: with the latent split, two epochs' steps (at most "
     "half the run), so that a domain motion enters the latent as displacements first; with --encoder-split or "
     "without the split, 0)"),
    ("amplitude_ramp_steps", int, "once on (--amplitude-start-steps), the decoded amplitude changes ramp in "
     "linearly over this many optimizer steps (0: at once; issue 17 candidate: the states then enter the latent "
     "without pushing a motion out)"),
    ("split_release_steps", int, "with --displacement-dims: the latent split holds for this many optimizer steps, "
     "then opens (every dimension drives every change; 0: it holds for the whole run; default: with the split, "
     "1.5 × --amplitude-start-steps (with --encoder-split 1.5 × the automatic KL warm-up, three epochs); "
     "without it, 0): the motion's dimensions found under the split, the states' "
     "displacements free afterwards"),
    ("blur_start_angstrom", float, "coarse to fine: low-pass the render residual by a Gaussian of this width (Å) at "
     "the start, the width falling linearly to 0 over --blur-epochs (0: off; issue 17 candidate)"),
    ("blur_epochs", float, "epochs over which --blur-start-angstrom's low-pass narrows to none"),
    ("render_loss", str, "the render term: l2 (mean squared residual, as cryoDRGN's; the default) or l1 (mean "
     "absolute residual, the default before 2026-12-06)"),
    ("graph_radius", float, "radius of the smoothness/distance graph (× mean nearest-neighbour distance)"),
    ("alignment_radius", float, "radius of the alignment/repulsion graph (× mean nearest-neighbour distance)"),
    ("repulsion_fraction", float, "repel Gaussians closer than this × mean nearest-neighbour distance"),
    ("regularise_on", str, "where the distance, alignment and repulsion terms are evaluated: gaussians, control "
     "(the control points of --decoder control: cost independent of the number of Gaussians) or auto (control "
     "with --decoder control)"),
]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_encoder_decoder_choices(parser: argparse.ArgumentParser, d: dict) -> None:
    """The options of what the image encoder reads and how the decoder joins z and the embeddings (issue 17's
    candidates; the defaults are the measured best)."""
    parser.add_argument("--encoder-centre", action=argparse.BooleanOptionalAction, default=d["encoder_centre"],
                        help="the image encoder sees each particle translated by its known shift (centred, as "
                        "cryoDRGN's encoder does), not as recorded (default: on with the latent split of "
                        "--displacement-dims, off without)")
    parser.add_argument("--encoder-split", action=argparse.BooleanOptionalAction, default=d["encoder_split"],
                        help="with the latent split of --displacement-dims: one image encoder for the displacement "
                        "dimensions of z and one for the amplitude read-out's, so that the states do not crowd a "
                        "motion out of the latent and amplitude changes are on from the start (measured: the hinge "
                        "and the states sooner, per-image FSC-AUC 0.004-0.015 lower; default off)")
    parser.add_argument("--amplitude-encoder-hidden", type=int, default=d["amplitude_encoder_hidden"],
                        metavar="H", help="with --encoder-split: the width of the amplitude part's image encoder "
                        "(default: --encoder-hidden)")
    parser.add_argument("--readout-control", action=argparse.BooleanOptionalAction, default=d["readout_control"],
                        help="--decoder control: the amplitude read-out's per-Gaussian vectors also get a part "
                        "interpolated from per-control-point vectors (spatially smooth amplitude changes; "
                        "default: on with the latent split of --displacement-dims, off without)")
    parser.add_argument("--readout-zero", choices=READOUT_ZEROS, default=d["readout_zero"],
                        help="--decoder control: which factor of the amplitude read-out u_g · h(z) starts at zero: "
                        "vectors (every Gaussian's u; h random: only the Gaussians whose residuals follow h(z) learn "
                        "a response to it; the default) or latent (h's last layer; each u random; the old default)")
    parser.add_argument("--amplitude-change", choices=AMPLITUDE_CHANGES, default=d["amplitude_change"],
                        help="how a decoded amplitude change Δa acts: log (softplus(raw + Δa): a factor exp(Δa) on "
                        "a fitted cloud's small amplitudes), linear (the base amplitude × (1 + Δa), floored smoothly "
                        "at zero: a part is gone at Δa = -1), clamp (floored at zero) or signed (not floored) "
                        "(default: log, or the loaded model's with --load)")
    parser.add_argument("--encoder-input", choices=ENCODER_INPUTS, default=d["encoder_input"],
                        help="what the image encoder reads: real (the windowed image's pixels) or fourier (the "
                        "real and imaginary parts of its Fourier transform inside a disc, as cryoDRGN's encoder "
                        "reads the Hartley transform; measured: no gain) (default %(default)s)")
    parser.add_argument("--encoder-fourier-radius", type=float, default=d["encoder_fourier_radius"],
                        help="with --encoder-input fourier: the disc's radius as a fraction of Nyquist (lower: the "
                        "encoder reads a low-pass image) (default %(default)s)")
    parser.add_argument("--decoder-combine", choices=DECODER_COMBINES, default=d["decoder_combine"],
                        help="how the decoder joins z and each Gaussian's embedding: sum (one linear layer on both) "
                        "or film (plus a gain from z on the embedding's features; measured: no gain) "
                        "(default %(default)s)")


def _add_learning_rate(parser: argparse.ArgumentParser, d: dict) -> None:
    """AdamW's rate, its schedule over the run and the parameter groups that learn at another rate."""
    parser.add_argument("--lr", type=float, default=d["lr"], help="AdamW learning rate (default %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=d["weight_decay"], help="default %(default)s")
    parser.add_argument("--lr-schedule", choices=["constant", "cosine", "wsd"], default=d["lr_schedule"],
                        help="the learning rate over the run: constant, cosine (to 0 at the end) or wsd (constant, "
                        "then a cosine to 0 over the last --lr-decay-fraction of the run; the default). The decay "
                        "follows --epochs: a finished run extended with --resume --epochs N goes back to the full "
                        "rate and decays again over the new end")
    parser.add_argument("--lr-decay-fraction", type=float, default=d["lr_decay_fraction"],
                        help="--lr-schedule wsd: the share of the run over which the learning rate decays (default "
                        "%(default)s)")
    parser.add_argument("--readout-lr-scale", type=float, default=d["readout_lr_scale"],
                        help="the amplitude read-out's parameters learn at this multiple of --lr (default "
                        "%(default)s)")
    parser.add_argument("--amplitude-encoder-freeze-steps", type=int, default=d["amplitude_encoder_freeze_steps"],
                        help="with --encoder-split: the amplitude part's image encoder stops learning once this many "
                        "optimizer steps have run (0: never; issue 17 candidate) (default %(default)s)")
    parser.add_argument("--amplitude-encoder-thaw-steps", type=int, default=d["amplitude_encoder_thaw_steps"],
                        help="with --amplitude-encoder-freeze-steps: the amplitude part's image encoder learns again "
                        "from this optimizer step on, at the run's rate then (e.g. the start of --lr-schedule wsd's "
                        "decay; 0: never; issue 17 candidate, not yet measured on the GPU) (default %(default)s)")


def add_args(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    parser.add_argument("dataset", help="dataset folder written by 'gaussianem preprocess'")
    parser.add_argument("-o", "--outdir", dest="rundir", required=True, help="run folder")
    parser.add_argument("--gaussians", help="base Gaussian cloud (PLY); default DATASET/gaussians.ply if 'fit' "
                        "has run, else DATASET/gaussians_init.ply")
    parser.add_argument("--epochs", "-n", "--num-epochs", type=int, default=d["epochs"],
                        help="number of epochs (default %(default)s)")
    parser.add_argument("--ind", metavar="IND.pkl", default=d["ind"],
                        help="train on these particles only: a cryoDRGN index .pkl, or a .npy/.txt of dataset rows "
                        "(z.E.npy then holds their rows, in this order)")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"], help="default %(default)s")
    parser.add_argument("--zdim", type=int, default=d["zdim"], help="latent dimension (default %(default)s)")
    _add_learning_rate(parser, d)
    parser.add_argument("--seed", type=int, default=d["seed"])
    parser.add_argument("--device", default=d["device"],
                        help="torch device: cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=d["amp"],
                        help="bf16 autocast for the MLPs on CUDA (projection and losses stay float32)")
    parser.add_argument("--num-workers", type=int, default=d["num_workers"], help="data loading processes")
    parser.add_argument("--preload", choices=("auto", "on", "off"), default=d["preload"],
                        help="hold all particles in device memory (auto: on CUDA when the stack takes at most 30 %% "
                        "of the GPU's memory)")
    parser.add_argument("--load", help="initialise the weights from a run folder or a weights.E.pt")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUNDIR from its last checkpoint "
                        "with its saved settings (config.yaml); an option given on the command line changes that "
                        "setting (e.g. --epochs), except the model's layer sizes, the dataset and --ind")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous run in RUNDIR")
    parser.add_argument("--train-base", action="store_true", default=d["train_base"],
                        help="also train the base Gaussian cloud")
    parser.add_argument("--predict-width", action="store_true", default=d["predict_width"],
                        help="decode a per-particle Δwidth too")
    _add_encoder_decoder_choices(parser, d)
    parser.add_argument("--decoder", choices=DECODERS, default=d["decoder"],
                        help="control: the pair MLP on --n-control-points control points, interpolated to every "
                        "Gaussian, plus a per-Gaussian amplitude read-out (cost nearly independent of the number of "
                        "Gaussians); pair: an MLP for every (particle, Gaussian) pair; auto: control when the cloud "
                        "has more Gaussians than control points, else pair (default %(default)s)")
    parser.add_argument("--projector", choices=PROJECTORS, default=d["projector"],
                        help="dense: every Gaussian on every pixel; splat: tile splatting of each Gaussian's "
                        "footprint (Triton kernels, CUDA); auto: splat where its kernel runs, dense elsewhere "
                        "(default %(default)s)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=d["compile"],
                        help="torch.compile the training step (default: on with CUDA, off on the CPU)")
    parser.add_argument("--cudagraphs", action=argparse.BooleanOptionalAction, default=d["cudagraphs"],
                        help="replay the compiled step as CUDA graphs (default: on with CUDA and --compile in one "
                        "process)")
    parser.add_argument("--step-graph", action=argparse.BooleanOptionalAction, default=d["step_graph"],
                        help="with --cudagraphs, capture the whole step (forward, backward, AdamW, memory bank) as one "
                        "CUDA graph: one launch per step (default on; --no-step-graph: forward and backward replay "
                        "as torch.compile's CUDA graphs, AdamW outside them)")
    parser.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=d["tf32"],
                        help="float32 matrix products (the projection's sums over Gaussians) on TF32 tensor cores: "
                        "inputs rounded to 10-bit mantissas, sums in float32 (CUDA)")
    parser.add_argument("--autotune", action="store_true", default=d["autotune"],
                        help="compile the step with max-autotune (benchmarks Triton matrix kernels with fused "
                        "epilogues first: minutes more compilation, maybe a faster step; CUDA)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=d["progress"],
                        help="no progress bars")
    parser.add_argument("--gpus", type=int, default=1, help="data-parallel processes on this node (launches "
                        "torchrun; --batch-size is per process); under torchrun the process group is joined "
                        "automatically")
    sizes = parser.add_argument_group("layer sizes")
    for name, typ, text in _SIZES:
        sizes.add_argument(_flag(name), type=typ, default=d[name], help=f"{text} (default %(default)s)")
    weights = parser.add_argument_group("losses")
    for name, typ, text in _LOSSES:
        weights.add_argument(_flag(name), type=typ, default=d[name], help=f"{text} (default %(default)s)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    return TrainConfig(**values)


def typed_settings(args: argparse.Namespace) -> frozenset[str] | None:
    """The settings the command line gives (options typed, defaults left out); None when it is unknown (a
    Namespace made in Python)."""
    argv = getattr(args, "command_argv", None)
    if argv is None:
        return None
    parser = argparse.ArgumentParser(add_help=False)
    add_args(parser)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    typed, _ = parser.parse_known_args([str(a) for a in argv])
    return frozenset(vars(typed))


def _argv_without_gpus(command_line: str) -> list[str]:
    words = shlex.split(command_line)[1:]
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
            continue
        if w == "--gpus":
            skip = True
            continue
        if not w.startswith("--gpus="):
            out.append(w)
    return out


def _has_run(rundir: Path) -> bool:
    from gaussianem.model.runfiles import CONFIG, list_checkpoints

    return (rundir / CONFIG).is_file() or bool(list_checkpoints(rundir))


def _remove_stub(rundir: Path) -> None:
    """A run that failed before its first checkpoint: remove what it wrote, so that a plain rerun is not blocked."""
    from gaussianem.io.locks import LOCK_NAME
    from gaussianem.model.runfiles import list_checkpoints

    if not rundir.is_dir() or list_checkpoints(rundir):
        return
    for p in rundir.iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
    log.info("the run failed before its first checkpoint: removed its partial outputs in %s", rundir)


def main(args: argparse.Namespace) -> int:
    from gaussianem.errors import InputError
    from gaussianem.io.locks import folder_lock
    from gaussianem.io.staging import check_output, sweep_leftovers
    from gaussianem.training import distributed
    from gaussianem.training.loop import train
    from gaussianem.training.objective import TrainingError

    if args.gpus < 1:
        raise InputError("--gpus must be >= 1")
    if args.gpus > 1 and distributed.world_from_env()[1] == 1:
        return distributed.launch(args.gpus, _argv_without_gpus(args.command_line))
    cfg = config_from_args(args)
    cfg.validate(resume=args.resume)
    rundir = Path(args.rundir)
    check_output(rundir, [args.dataset, args.gaussians, args.load], overwrite=True)
    rank, world = distributed.init_process_group(args.device)
    try:
        lock = folder_lock(rundir, "gaussianem train") if rank == 0 else contextlib.nullcontext()
        with lock:
            had_run = _has_run(rundir)
            if rank == 0:
                sweep_leftovers(rundir, locked=True)
            try:
                rundir = train(cfg, resume=args.resume, overwrite=args.overwrite, rank=rank, world_size=world,
                               given=typed_settings(args))
            except BaseException:
                if rank == 0 and not args.resume and (args.overwrite or not had_run):
                    _remove_stub(rundir)
                raise
    except TrainingError as exc:
        log.error("%s", exc)
        print(f"gaussianem train: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank == 0:
        print(f"training run in {rundir}")
    return 0
