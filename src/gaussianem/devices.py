"""Device resolution for every command: one place that turns ``--device`` into a ``torch.device``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gaussianem.errors import InputError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str | None) -> torch.device:
    """``None`` -> the first CUDA device when there is one, else the CPU; otherwise any torch device string.

    Raises InputError (one line) for a malformed string or a device this machine does not have.
    """
    import torch  # lazily: `gaussianem --help` must not pay for importing torch

    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"--device {name!r}: not a torch device ({exc})") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device is available (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"--device {name}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {name}: unsupported device type {dev.type!r} (use cpu or cuda[:N])")
    return dev
