"""The demo: the whole pipeline at a tiny size through the command line; outputs and the report exist."""

from __future__ import annotations

import json

import pytest

from gaussianem.cli import main
from gaussianem.commands import demo


def test_stage_arguments_follow_the_command_lines(tmp_path):
    s = demo.DemoSettings()
    pre = [str(a) for a in demo.stage_arguments("preprocess", tmp_path, s)]
    assert pre[:2] == [str(tmp_path / "simulation" / "particles.star"), "-o"]
    assert "--box" in pre and pre[pre.index("--box") + 1] == "32"
    fit = [str(a) for a in demo.stage_arguments("fit", tmp_path, s)]
    assert fit[0] == str(tmp_path / "dataset") and fit[fit.index("--epochs") + 1] == "3"
    with pytest.raises(ValueError):
        demo.stage_arguments("nothing", tmp_path, s)


def test_tiny_demo_runs_every_stage(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "-o", str(out), "--n-particles", "64", "--box", "24", "--work-box", "16", "--fit-epochs", "1",
               "--epochs", "1", "--batch-size", "32", "--encoder-hidden", "16", "--decoder-hidden", "8",
               "--ksample", "2", "--volume-bins", "2", "--no-umap"])
    assert rc == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "demo.json").read_text())
    assert set(summary["stages"]) | set(summary["missing"]) == set(demo.STAGES)
    assert all(v["exit_code"] == 0 for v in summary["stages"].values())
    assert (out / "simulation" / "particles.star").is_file()
    assert (out / "dataset" / "dataset.json").is_file()
    assert (out / "dataset" / "gaussians.ply").is_file() and (out / "dataset" / "consensus.mrc").is_file()
    fit = json.loads((out / "dataset" / "fit.json").read_text())
    assert fit["config"]["epochs"] == 1 and fit["fsc_input_map"]["fsc_auc"] > 0.25
    if not summary["missing"]:
        assert summary["report"] and (tmp_path / summary["report"]).is_file()
        assert summary["report"] in printed
    else:
        assert "not yet implemented" in printed


def test_bad_demo_input_is_refused(tmp_path):
    assert main(["demo", "-o", str(tmp_path / "x"), "--box", "33"]) == 2


def test_help_does_not_import_torch():
    """`gaussianem --help` and every command's --help build without importing torch (a fraction of a second, not
    the several seconds torch and pandas take): commands import their library code inside main()."""
    import subprocess
    import sys

    code = ("import sys; from gaussianem.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'pandas', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
