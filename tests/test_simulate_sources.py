"""Simulation specs: where a structure source named in a YAML spec resolves (files relative to the spec,
MDAnalysisTests references through the installed package)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from gaussianem.simulate.ensemble import build_ensemble
from gaussianem.simulate.presets import resolve_data_path
from gaussianem.simulate.spec import load_spec, resolve_source_path


def _pdb(path: Path, coords: np.ndarray, chain: str = "A") -> Path:
    lines = [f"ATOM  {i + 1:5d}  CA  ALA {chain}{i + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C"
             for i, (x, y, z) in enumerate(coords)]
    path.write_text("\n".join(lines + ["END"]) + "\n")
    return path


@pytest.fixture
def fake_mdanalysis_tests(tmp_path, monkeypatch):
    """A stand-in MDAnalysisTests package: ``datafiles.TINY`` and ``data/sub/tiny.pdb`` (5 atoms)."""
    root = tmp_path / "fake_mdat"
    (root / "data" / "sub").mkdir(parents=True)
    pdb = _pdb(root / "data" / "sub" / "tiny.pdb", np.arange(15, dtype=float).reshape(5, 3) * 1.5)
    pkg = types.ModuleType("MDAnalysisTests")
    pkg.__path__ = [str(root)]
    datafiles = types.ModuleType("MDAnalysisTests.datafiles")
    datafiles.__file__ = str(root / "datafiles.py")
    datafiles.TINY = str(pdb)
    pkg.datafiles = datafiles
    monkeypatch.setitem(sys.modules, "MDAnalysisTests", pkg)
    monkeypatch.setitem(sys.modules, "MDAnalysisTests.datafiles", datafiles)
    return pdb


def test_resolve_source_path_rules(tmp_path):
    base = tmp_path / "specs"
    assert resolve_source_path("MDAnalysisTests:PSF", base) == "MDAnalysisTests:PSF"
    assert resolve_source_path("MDAnalysisTests:mmcif/1BD2.cif.gz", base) == "MDAnalysisTests:mmcif/1BD2.cif.gz"
    assert resolve_source_path("model.cif", base) == str((base / "model.cif").resolve())
    assert resolve_source_path("../x/model.cif", base) == str((tmp_path / "x" / "model.cif").resolve())
    assert resolve_source_path(str(tmp_path / "abs.pdb"), base) == str(tmp_path / "abs.pdb")


def test_yaml_preset_keeps_mdanalysis_references(tmp_path):
    spec_file = tmp_path / "adk.yaml"
    spec_file.write_text("preset: adk\nn_particles: 4\n")
    src = load_spec(spec_file).source
    assert src["topology"] == "MDAnalysisTests:PSF" and src["trajectory"] == "MDAnalysisTests:DCD"


def test_yaml_mdanalysis_reference_resolves_through_the_package(tmp_path, fake_mdanalysis_tests):
    pdb = fake_mdanalysis_tests
    folder = tmp_path / "specs"
    folder.mkdir()
    for name, value in [("by_path.yaml", "MDAnalysisTests:sub/tiny.pdb"), ("by_attr.yaml", "MDAnalysisTests:TINY")]:
        spec_file = folder / name
        spec_file.write_text(f'source: {{kind: structure, path: "{value}"}}\nbox: 32\napix: 2.0\n')
        spec = load_spec(spec_file)
        assert spec.source["path"] == value
        assert resolve_data_path(spec.source["path"]) == str(pdb)
        ens = build_ensemble(spec)
        assert ens.n_atoms == 5
        # centred copy of the file's coordinates
        want = np.arange(15, dtype=float).reshape(5, 3) * 1.5
        np.testing.assert_allclose(ens.base, want - want.mean(0), atol=1e-3)
    # a plain relative path still resolves against the YAML's folder
    _pdb(folder / "local.pdb", np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]]))
    (folder / "local.yaml").write_text("source: {kind: structure, path: local.pdb}\n")
    spec = load_spec(folder / "local.yaml")
    assert spec.source["path"] == str((folder / "local.pdb").resolve())
    assert build_ensemble(spec).n_atoms == 3


def test_yaml_real_mdanalysis_structure(tmp_path):
    pytest.importorskip("MDAnalysisTests", reason="reads mmcif/1BD2.cif.gz from MDAnalysisTests (the bench extra)")
    spec_file = tmp_path / "tcr.yaml"
    spec_file.write_text('source: {kind: structure, path: "MDAnalysisTests:mmcif/1BD2.cif.gz"}\nbox: 64\n'
                         "apix: 3.0\n")
    ens = build_ensemble(load_spec(spec_file))
    assert ens.n_atoms > 3000  # the TCR-pMHC complex, heavy atoms
