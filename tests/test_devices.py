"""--device: any torch device string, one clear line for a device this machine does not have."""

import pytest
import torch

from gaussianem.devices import resolve_device
from gaussianem.errors import InputError


def test_default_and_explicit_cpu():
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu0", "cuda:x", "tpu"])
def test_malformed_or_unsupported_device_is_one_input_error(name):
    with pytest.raises(InputError, match="--device"):
        resolve_device(name)


def test_absent_cuda_device_is_refused():
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(InputError, match="--device cuda:"):
        resolve_device(f"cuda:{n}")


def test_train_accepts_an_indexed_device_and_refuses_an_absent_one(tmp_path, capsys):
    from gaussianem.cli import main

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    rc = main(["train", str(tmp_path / "no_dataset"), "-o", str(tmp_path / "run"), "--device", f"cuda:{n}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "cuda:" in err[0] and "Traceback" not in err[0]
