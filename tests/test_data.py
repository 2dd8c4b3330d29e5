"""Tests of dsl_torchrec.data: readers, prepare, manifest, dataset, synth, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dsl_torchrec.data import (
    DataError,
    DatasetWriter,
    InteractionData,
    Manifest,
    make_catalog,
    prepare,
    read_irb,
    read_lightgcn,
    synth,
)
from dsl_torchrec.data.cli import main

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def irb(path: Path, pairs: list[tuple[int, int]]) -> Path:
    return write(path, "user_procid\titem_procid\n" + "".join(f"{u}\t{i}\n" for u, i in pairs))


def pairs_of(data: InteractionData, split: str) -> set[tuple[int, int]]:
    u, i = data.split(split)
    return set(zip(u.tolist(), i.tolist()))


# ---------------------------------------------------------------- readers + prepare round trip


def test_lightgcn_round_trip(tmp_path: Path) -> None:
    # user 1 has no items; user 2's line repeats item 5; a blank line at the end.
    train = write(tmp_path / "train.txt", "0 3 1 2\n1\n2 5 5 0\n3 4\n\n")
    test = write(tmp_path / "test.txt", "0 4\n2 1\n3 0 2\n")
    u, i = read_lightgcn(train)
    assert u.dtype == np.int64 and i.dtype == np.int64
    assert list(zip(u.tolist(), i.tolist())) == [(0, 3), (0, 1), (0, 2), (2, 5), (2, 5), (2, 0),
                                                 (3, 4)]
    m = prepare("lightgcn", train, test, tmp_path / "ds", valid_fraction=0)
    assert (m.num_users, m.num_items) == (4, 6)
    assert set(m.splits) == {"train", "test"}
    assert m.splits["train"]["rows"] == 6  # the duplicate (2, 5) is dropped
    assert m.created_by["duplicates_dropped"] == {"train": 1, "test": 0}
    data = InteractionData(tmp_path / "ds", verify=True)
    users, items = data.split("train")
    assert users.tolist() == [0, 0, 0, 2, 2, 3]  # sorted by user, then item
    assert items.tolist() == [1, 2, 3, 0, 5, 4]
    assert pairs_of(data, "test") == {(0, 4), (2, 1), (3, 0), (3, 2)}
    assert data.item_counts().tolist() == [1, 1, 1, 1, 1, 1]
    indptr, indices = data.user_item_csr("train")
    assert indptr.tolist() == [0, 3, 3, 5, 6] and indices.tolist() == [1, 2, 3, 0, 5, 4]
    assert data.has_split("test") and not data.has_split("valid")


def test_irb_round_trip(tmp_path: Path) -> None:
    train = irb(tmp_path / "train.tsv", [(1, 2), (0, 7), (1, 0), (0, 7), (2, 3)])
    test = irb(tmp_path / "test.tsv", [(0, 1), (2, 8)])
    u, i = read_irb(train)
    assert u.tolist() == [1, 0, 1, 0, 2] and i.tolist() == [2, 7, 0, 7, 3]
    m = prepare("irb", train, test, tmp_path / "ds", valid_fraction=0, name="tiny")
    assert m.name == "tiny" and (m.num_users, m.num_items) == (3, 9)
    data = InteractionData(tmp_path / "ds")
    assert data.split("train")[0].tolist() == [0, 1, 1, 2]
    assert data.split("train")[1].tolist() == [7, 0, 2, 3]
    assert pairs_of(data, "test") == {(0, 1), (2, 8)}
    assert data.item_counts("test").sum() == 2 and data.item_counts().shape == (9,)
    saved = Manifest.read(tmp_path / "ds")
    assert saved == m and saved.created_by["format"] == "irb"


def test_prepare_with_valid_file(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", "0 0 1 2\n1 1 2\n")
    valid = write(tmp_path / "valid.txt", "0 3\n1 0\n")
    test = write(tmp_path / "test.txt", "0 4\n1 3\n")
    m = prepare("lightgcn", train, test, tmp_path / "ds", valid=valid, valid_fraction=0.5)
    assert {k: v["rows"] for k, v in m.splits.items()} == {"train": 5, "valid": 2, "test": 2}
    assert m.created_by["valid_from"] == "file"


# ---------------------------------------------------------------------------- valid carving


def _carve(tmp_path: Path, seed: int, out: str) -> InteractionData:
    rng = np.random.default_rng(123)
    counts = [1, 2, 3, 10, 25, 40]  # per user
    pairs = [(u, int(i)) for u, c in enumerate(counts) for i in rng.choice(60, c, replace=False)]
    train = irb(tmp_path / "train.tsv", pairs)
    test = irb(tmp_path / "test.tsv", [(u, 60 + u) for u in range(len(counts))])
    prepare("irb", train, test, tmp_path / out, valid_fraction=0.2, seed=seed)
    return InteractionData(tmp_path / out)


def test_valid_carving(tmp_path: Path) -> None:
    data = _carve(tmp_path, seed=7, out="a")
    train, valid = pairs_of(data, "train"), pairs_of(data, "valid")
    assert not train & valid
    assert len(train | valid) == 1 + 2 + 3 + 10 + 25 + 40
    n_valid = data.user_counts("valid").tolist()
    # round-half-up(0.2 * n_u), but never a user's last train item
    assert n_valid == [0, 0, 1, 2, 5, 8]
    assert (data.user_counts("train") >= 1).all()
    assert data.manifest.created_by["valid_fraction"] == 0.2
    assert data.manifest.created_by["valid_from"] == "carved from train"

    same = _carve(tmp_path, seed=7, out="b")
    other = _carve(tmp_path, seed=8, out="c")
    assert same.manifest.splits == data.manifest.splits  # sha256 equal: deterministic
    assert pairs_of(other, "valid") != valid


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("fmt", "text", "line", "words"),
    [
        ("lightgcn", "0 1 2\n1 2,3\n", 2, ["non-numeric id '2,3'", "non-negative integer"]),
        ("lightgcn", "0 1\n1 2\n2 x7 3\n", 3, ["non-numeric id 'x7'"]),
        ("lightgcn", "0 1\n1 -4\n", 2, ["negative id '-4'"]),
        ("lightgcn", "0 1\n1 1.5\n", 2, ["non-numeric id '1.5'"]),
        ("lightgcn", "0 1\n1 1234567890123456789012\n", 2, ["too large"]),
        ("irb", "user_procid\titem_procid\n0\t1\n1\tabc\n", 3, ["non-numeric id 'abc'"]),
        ("irb", "user_procid\titem_procid\n0\t1\n-1\t2\n", 3, ["negative id '-1'"]),
        ("irb", "user_procid\titem_procid\n0\t1\t5\n", 2, ["3 field(s)", "2 tab-separated"]),
        ("irb", "user_procid\titem_procid\n0\t1\n\n7\n", 4, ["1 field(s)"]),
        ("irb", "user_procid\titem_procid\n0 1\n", 2, ["space inside a line", "tab-separated"]),
        ("irb", "user\titem\n0\t1\n", 1, ["bad header", "user_procid<TAB>item_procid"]),
        ("irb", "0\t1\n", 1, ["bad header"]),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, fmt: str, text: str, line: int,
                                      words: list[str]) -> None:
    path = write(tmp_path / "bad.txt", text)
    reader = read_lightgcn if fmt == "lightgcn" else read_irb
    with pytest.raises(DataError) as err:
        reader(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert err.value.line == line
    for word in words:
        assert word in msg, msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.tsv: file not found"):
        read_irb(tmp_path / "nope.tsv")
    test = irb(tmp_path / "test.tsv", [(0, 0)])
    with pytest.raises(DataError, match="nope.tsv: file not found"):
        prepare("irb", tmp_path / "nope.tsv", test, tmp_path / "ds")
    with pytest.raises(DataError, match="unknown format 'csv'"):
        prepare("csv", test, test, tmp_path / "ds")


def test_data_error_pickles() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(DataError("a.tsv", "bad id", line=3, expected="an int")))
    assert isinstance(err, ValueError) and err.line == 3
    assert str(err) == "a.tsv:3: bad id (expected an int)"


def test_failed_prepare_leaves_nothing(tmp_path: Path) -> None:
    train = irb(tmp_path / "train.tsv", [(0, 1), (1, 2)])
    bad_test = write(tmp_path / "test.tsv", "user_procid\titem_procid\n0\tz\n")
    before = set(tmp_path.iterdir())
    with pytest.raises(DataError, match=r"test.tsv:2: non-numeric id 'z'"):
        prepare("irb", train, bad_test, tmp_path / "ds")
    assert set(tmp_path.iterdir()) == before  # neither `ds` nor a temp dir

    # Overwriting an existing dataset with a failing run keeps the old one intact.
    good_test = irb(tmp_path / "good.tsv", [(0, 2)])
    m = prepare("irb", train, good_test, tmp_path / "ds")
    with pytest.raises(DataError):
        prepare("irb", train, bad_test, tmp_path / "ds", overwrite=True)
    assert Manifest.read(tmp_path / "ds") == m
    InteractionData(tmp_path / "ds", verify=True)


def test_existing_out_dir(tmp_path: Path) -> None:
    train = irb(tmp_path / "train.tsv", [(0, 1), (1, 2)])
    test = irb(tmp_path / "test.tsv", [(0, 2)])
    (tmp_path / "empty").mkdir()
    prepare("irb", train, test, tmp_path / "empty")  # an empty dir is fine
    with pytest.raises(DataError, match="exists and is not empty.*--overwrite"):
        prepare("irb", train, test, tmp_path / "empty")
    m = prepare("irb", train, test, tmp_path / "empty", valid_fraction=0, overwrite=True)
    assert set(Manifest.read(tmp_path / "empty").splits) == set(m.splits) == {"train", "test"}
    other = tmp_path / "work"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a dataset directory"):
        prepare("irb", train, test, other, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------------ manifest + dataset


@pytest.fixture
def small_ds(tmp_path: Path) -> Path:
    train = irb(tmp_path / "train.tsv", [(0, 1), (0, 2), (1, 0), (2, 2)])
    test = irb(tmp_path / "test.tsv", [(0, 0), (2, 1)])
    prepare("irb", train, test, tmp_path / "ds", valid_fraction=0)
    return tmp_path / "ds"


def test_manifest_verify_catches_tampering(small_ds: Path) -> None:
    m = Manifest.read(small_ds)
    m.verify(small_ds)
    raw = json.loads((small_ds / "manifest.json").read_text())
    raw["splits"]["test"]["sha256"] = "0" * 64
    (small_ds / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"test.parquet field 'sha256': sha256 .* differs"):
        Manifest.read(small_ds).verify(small_ds)
    with pytest.raises(DataError, match="sha256"):
        InteractionData(small_ds, verify=True)
    InteractionData(small_ds)  # checksums are only checked on request

    raw["splits"]["test"]["rows"] = 3
    (small_ds / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"test.parquet field 'rows': has 2 rows but the "
                       r"manifest says 3"):
        InteractionData(small_ds)

    (small_ds / "test.parquet").unlink()
    with pytest.raises(DataError, match=r"test.parquet: split file of 'test' is missing"):
        m.verify(small_ds)


def test_manifest_read_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: dataset directory not found.*dsl-data "
                       r"prepare.*dsl-data synth"):
        Manifest.read(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"manifest.json: manifest not found.*dsl-data prepare"):
        InteractionData(tmp_path)
    (tmp_path / "manifest.json").write_text('{"name": "x", "num_users": 3}')
    with pytest.raises(DataError, match=r"manifest.json field 'num_items': missing field"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest.json: not valid JSON"):
        Manifest.read(tmp_path)


def test_out_of_range_id(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds") as w:
        w.append("train", np.array([0, 1, 1]), np.array([0, 4, 1]))
        w.append("test", np.array([0, 1]), np.array([2, 3]))
        w.finish("bad", num_users=2, num_items=4, created_by={})
    with pytest.raises(DataError) as err:
        InteractionData(tmp_path / "ds")
    msg = str(err.value)
    assert "train.parquet row 1 field 'item_id': id 4 out of range" in msg
    assert "0 <= item_id < num_items = 4" in msg


def test_empty_train_split(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds") as w:
        w.append("test", np.array([0]), np.array([0]))
        w.finish("no-train", num_users=1, num_items=1, created_by={})
    with pytest.raises(DataError, match="no 'train' split"):
        InteractionData(tmp_path / "ds")


def test_csr_sorts_foreign_order(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds") as w:  # rows not in canonical order
        w.append("train", np.array([2, 0, 2, 0]), np.array([3, 1, 0, 2]))
        w.finish("x", num_users=4, num_items=4, created_by={})
    data = InteractionData(tmp_path / "ds")
    indptr, indices = data.user_item_csr("train")
    assert indptr.tolist() == [0, 2, 2, 4, 4] and indices.tolist() == [1, 2, 0, 3]
    assert not data.split("train")[0].flags.writeable  # the cache cannot be mutated


# --------------------------------------------------------------------------------- synth


def test_synth_deterministic_and_well_formed(tmp_path: Path) -> None:
    kw = dict(users=400, items=300, interactions=6000, chunk_rows=2000)  # several chunks
    m1 = synth(out=tmp_path / "a", seed=3, **kw)
    m2 = synth(out=tmp_path / "b", seed=3, **kw)
    m3 = synth(out=tmp_path / "c", seed=4, **kw)
    assert m1.splits == m2.splits and m1.splits != m3.splits
    assert m1.created_by["command"] == "synth" and m1.created_by["params"]["chunk_rows"] == 2000
    data = InteractionData(tmp_path / "a", verify=True)
    assert (data.num_users, data.num_items) == (400, 300)
    rows = sum(data.rows(s) for s in ("train", "valid", "test"))
    assert 0.8 * 6000 < rows <= 1.05 * 6000
    splits = {s: pairs_of(data, s) for s in ("train", "valid", "test")}
    assert sum(len(v) for v in splits.values()) == rows  # no duplicates within a split
    assert not (splits["train"] & splits["test"] or splits["train"] & splits["valid"]
                or splits["valid"] & splits["test"])
    assert (data.user_counts("train") >= 1).all() and (data.user_counts("test") >= 1).all()
    test_share = data.rows("test") / rows
    assert 0.15 < test_share < 0.3
    users = data.split("train")[0]
    assert (np.diff(users) >= 0).all()
    counts = np.sort(data.item_counts())[::-1]
    assert counts[:30].sum() / counts.sum() > 0.2  # power law: top 10% of items >> 10% share


def test_synth_planted_structure(tmp_path: Path) -> None:
    users, items, clusters = 1500, 800, 32
    synth(users, items, 30000, tmp_path / "s", seed=0, clusters=clusters)
    data = InteractionData(tmp_path / "s")
    cat = make_catalog(items, clusters, 0.8, seed=0)  # the generator's own item side
    tu, ti = data.split("train")
    eu, ei = data.split("test")

    # A test item shares a cluster with the user's train items far more often than an item
    # drawn by popularity alone does.
    has = np.zeros((users, clusters), dtype=bool)
    has[tu, cat.cluster[ti]] = True
    pop = data.item_counts().astype(float)
    rng = np.random.default_rng(0)
    fake = rng.choice(items, size=ei.size, p=pop / pop.sum())
    planted, chance = has[eu, cat.cluster[ei]].mean(), has[eu, cat.cluster[fake]].mean()
    assert planted > 0.75 and planted > 3 * chance, (planted, chance)

    # And a model that does not know the clusters finds them: item-kNN >> popularity.
    x = np.zeros((users, items), dtype=np.float32)
    x[tu, ti] = 1
    truth = np.zeros((users, items), dtype=bool)
    truth[eu, ei] = True

    def recall_at_20(scores: np.ndarray) -> float:
        scores = np.where(x > 0, -np.inf, scores)
        top = np.argpartition(-scores, 20, axis=1)[:, :20]
        hits = truth[np.arange(users)[:, None], top].sum(1)
        n = truth.sum(1)
        return float((hits[n > 0] / np.minimum(n[n > 0], 20)).mean())

    co = x.T @ x
    norm = np.sqrt(np.diag(co)) + 1e-9
    np.fill_diagonal(co, 0)
    knn = recall_at_20(x @ (co / norm[:, None] / norm[None, :]))
    popular = recall_at_20(np.broadcast_to(pop, x.shape))
    assert knn > 2 * popular and knn > 0.3, (knn, popular)


def test_synth_bad_params(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="field 'test_fraction'"):
        synth(10, 10, 100, tmp_path / "x", test_fraction=1.5)
    with pytest.raises(DataError, match="unknown synth parameter"):
        synth(10, 10, 100, tmp_path / "x", colour=3)
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------------- CLI


def test_cli_prepare_inspect_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = irb(tmp_path / "train.tsv", [(u, i) for u in range(5) for i in range(u, u + 6)])
    test = irb(tmp_path / "test.tsv", [(u, 11) for u in range(5)])
    out = tmp_path / "ds"
    rc = main(["prepare", "--format", "irb", "--train", str(train), "--test", str(test),
               "--out", str(out), "--valid-fraction", "0.2", "--seed", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "train 25 / valid 5 / test 5 rows" in text
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "density" in text and "top-1% items (1)" in text
    assert main(["verify", str(out)]) == 0
    assert main(["synth", "--users", "50", "--items", "40", "--interactions", "500", "--out",
                 str(tmp_path / "syn"), "--clusters", "4"]) == 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["inspect", "{tmp}/missing"], "missing: dataset directory not found"),
        (["prepare", "--format", "irb", "--train", "{tmp}/bad.tsv", "--test", "{tmp}/bad.tsv",
          "--out", "{tmp}/ds"], "bad.tsv:3: negative id '-2'"),
        (["synth", "--users", "0", "--items", "5", "--interactions", "9", "--out", "{tmp}/s"],
         "field 'users'"),
    ],
)
def test_cli_errors_are_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              argv: list[str], expect: str) -> None:
    write(tmp_path / "bad.tsv", "user_procid\titem_procid\n0\t1\n-2\t1\n")
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("dsl-data: error: ") and expect in err, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "ds").exists()


def test_cli_usage_error_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "--format", "csv"]) == 2
    assert "usage: dsl-data" in capsys.readouterr().err


# ------------------------------------------------------------------------------ real data


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real datasets not present at {SHARED_DATA}")
def test_real_amazon_health(tmp_path: Path) -> None:
    src = SHARED_DATA / "amazon2014-health"
    m = prepare("irb", src / "train.tsv", src / "test.tsv", tmp_path / "health")
    assert (m.num_users, m.num_items) == (1974, 1200)
    assert m.splits["train"]["rows"] + m.splits["valid"]["rows"] == 37784
    assert m.splits["test"]["rows"] == 10405
    data = InteractionData(tmp_path / "health", verify=True)
    assert (data.user_counts("train") >= 1).all()
    assert not pairs_of(data, "train") & pairs_of(data, "valid")
