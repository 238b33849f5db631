"""select: subsets written back as star/cs keep every column, the optics table and the image paths."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import starfile
from conftest import make_cs, run, simulate, write_map, write_relion31

from gaussianem.cli import main as cli_main
from gaussianem.errors import InputError
from gaussianem.io import cryosparc
from gaussianem.io.dataset import load_dataset
from gaussianem.select import select


@pytest.fixture(scope="module")
def sim():
    return simulate(40, 24, 2.5, seed=31)


def test_star_round_trip(tmp_path, sim):
    images = sim["images"].copy()
    images[7, 2, 2] = np.nan  # dropped by --drop-bad: dataset index != source row
    s2 = dict(sim, images=images)
    star_path = write_relion31(tmp_path / "proj", s2)
    mp = write_map(tmp_path / "map.mrc", sim)
    ds = load_dataset(run(tmp_path, star_path, mp, box=16, drop_bad=True))
    chosen = np.array([0, 6, 7, 20, 38])  # dataset indices; 7 and above map to source rows + 1
    np.save(tmp_path / "ind.npy", chosen)
    out = star_path.parent / "subset.star"
    assert cli_main(["select", str(ds.root), "--indices", str(tmp_path / "ind.npy"), "-o", str(out)]) == 0
    orig = starfile.read(star_path, always_dict=True)
    sub = starfile.read(out, always_dict=True)
    assert list(sub) == ["optics", "particles"]
    assert list(sub["particles"].columns) == list(orig["particles"].columns)
    assert sub["optics"].equals(orig["optics"])
    rows = ds.source_index[chosen]
    assert rows.tolist() == [0, 6, 8, 21, 39]
    assert sub["particles"]["rlnImageName"].tolist() == orig["particles"]["rlnImageName"].iloc[rows].tolist()
    np.testing.assert_allclose(sub["particles"]["rlnAngleRot"], orig["particles"]["rlnAngleRot"].iloc[rows])
    ds2 = load_dataset(run(tmp_path, out, mp, out="ds2", box=16))
    np.testing.assert_array_equal(np.asarray(ds2.images), np.asarray(ds.images)[chosen])
    np.testing.assert_allclose(ds2.rotations, ds.rotations[chosen], atol=1e-9)
    ds.close()
    ds2.close()


def test_labels_classes_and_cs(tmp_path, sim):
    from conftest import write_stack

    write_stack(tmp_path / "s.mrcs", sim["images"], sim["apix"])
    n = len(sim["images"])
    cs = make_cs(sim, ["s.mrcs"] * n, np.arange(n), sim["apix"])
    cryosparc.write_cs(tmp_path / "p.cs", cs)
    labels = np.arange(n) % 4
    with open(tmp_path / "labels.pkl", "wb") as f:
        pickle.dump(labels, f)
    out = tmp_path / "sub.cs"
    assert cli_main(["select", str(tmp_path / "p.cs"), "--labels", str(tmp_path / "labels.pkl"),
                     "--classes", "0,3", "-o", str(out)]) == 0
    sub = np.load(out)
    assert sub.dtype == cs.dtype
    np.testing.assert_array_equal(sub, cs[np.isin(labels, [0, 3])])


def test_select_errors(tmp_path, sim, capsys):
    star_path = write_relion31(tmp_path / "proj", sim)
    with pytest.raises(InputError, match="out of range"):
        select(star_path, tmp_path / "o.star", indices=np.array([0, 40]))
    with pytest.raises(InputError, match="duplicates"):
        select(star_path, tmp_path / "o.star", indices=np.array([1, 1]))
    with pytest.raises(InputError, match="must end in .star"):
        select(star_path, tmp_path / "o.cs", indices=np.array([1]))
    (tmp_path / "i.txt").write_text("1, 2, 3.5")
    assert cli_main(["select", str(star_path), "--indices", str(tmp_path / "i.txt"), "-o",
                     str(tmp_path / "o.star")]) == 2
    assert "integers" in capsys.readouterr().err
    assert not (tmp_path / "o.star").exists()
    (tmp_path / "i.txt").write_text("3 1 2")
    assert select(star_path, tmp_path / "o.star", indices=np.loadtxt(tmp_path / "i.txt", dtype=int)) == 3
    got = starfile.read(tmp_path / "o.star", always_dict=True)["particles"]["rlnImageName"].tolist()
    orig = starfile.read(star_path, always_dict=True)["particles"]["rlnImageName"].tolist()
    assert got == [orig[3], orig[1], orig[2]]
