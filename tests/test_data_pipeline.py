"""Tests of raw-log prepare (movielens, log), split protocols, inspect, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsl_torchrec.data import (
    DataError,
    DatasetWriter,
    InteractionData,
    Manifest,
    prepare,
    prepare_log,
    split_dataset,
    synth,
)
from dsl_torchrec.data.cli import main
from dsl_torchrec.data.logs import filter_log
from dsl_torchrec.data.split import gini
from dsl_torchrec.data.summary import inspect_text, plot_popularity

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def rows(directory: Path, split: str = "all") -> list[tuple[int, ...]]:
    t = pq.read_table(Path(directory) / f"{split}.parquet")
    return [tuple(r.values()) for r in t.to_pylist()]


def vocab(directory: Path, name: str) -> list:
    return pq.read_table(Path(directory) / f"{name}.parquet").column("original_id").to_pylist()


def pairs(data: InteractionData, split: str) -> set[tuple[int, int]]:
    u, i = data.split(split)
    return set(zip(u.tolist(), i.tolist()))


# ------------------------------------------------------------------------------ movielens


def test_movielens_u_data(tmp_path: Path) -> None:
    src = write(tmp_path / "u.data",
                "10\t5\t4\t300\n10\t7\t2\t100\n3\t5\t5\t200\n10\t5\t5\t50\n3\t9\t4\t400\n")
    m = prepare_log("movielens", src, tmp_path / "ml", min_rating=3)
    # 10/7 has rating 2 -> dropped; (10, 5) twice -> the earliest (t=50) is kept.
    assert (m.num_users, m.num_items) == (2, 2) and set(m.splits) == {"all"}
    assert vocab(tmp_path / "ml", "users") == [3, 10]  # sorted original ids -> 0, 1
    assert vocab(tmp_path / "ml", "items") == [5, 9]
    assert rows(tmp_path / "ml") == [(0, 0, 200), (0, 1, 400), (1, 0, 50)]
    assert m.created_by["dropped"] == {"rating_below_min": 1, "duplicate_pairs": 1}
    assert m.created_by["rows_read"] == 5 and m.created_by["rows_kept"] == 3
    data = InteractionData(tmp_path / "ml", verify=True, require_train=False)
    assert data.timestamps("all").tolist() == [200, 400, 50]
    assert set(m.files) == {"users", "items"}
    with pytest.raises(DataError, match=r"no 'train' split.*dsl-data split"):
        InteractionData(tmp_path / "ml")


def test_movielens_ratings_dat(tmp_path: Path) -> None:
    src = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3.5::978302109\n"
                "2::1193::4::978298413\n")
    m = prepare_log("movielens", src, tmp_path / "ml", min_rating=4, dedup="latest")
    assert rows(tmp_path / "ml") == [(0, 0, 978300760), (1, 0, 978298413)]
    assert vocab(tmp_path / "ml", "items") == [1193] and m.num_users == 2


# ----------------------------------------------------------------------------------- logs


def test_log_csv_with_raw_string_ids(tmp_path: Path) -> None:
    src = write(tmp_path / "clicks.csv",
                "visitor,sku,when,stars\n"
                "alice,A-1,2020-01-02 10:00:00,5\n"
                "bob,A-1,2020-01-03,3\n"
                "\n"
                "alice,B-2,2020-01-01,4\n"
                "alice,A-1,2019-12-31,2\n"
                "carol,007,2020-02-01,5\n"
                "carol,7,2020-02-02,5\n")
    m = prepare_log("log", src, tmp_path / "ds", user_col="visitor", item_col="sku",
                    time_col="when", rating_col="stars", dedup="latest")
    assert vocab(tmp_path / "ds", "users") == ["alice", "bob", "carol"]
    assert vocab(tmp_path / "ds", "items") == ["007", "7", "A-1", "B-2"]  # '007' != '7'
    got = rows(tmp_path / "ds")
    assert (0, 2, 1577959200) in got  # alice/A-1: the latest duplicate, 2020-01-02 10:00 UTC
    assert len(got) == 5 and m.created_by["dropped"]["duplicate_pairs"] == 1
    assert m.created_by["columns"] == {"user": "visitor", "item": "sku", "timestamp": "when",
                                       "rating": "stars"}


def test_log_tsv_without_header_and_default_columns(tmp_path: Path) -> None:
    src = write(tmp_path / "log.tsv", "u1\tx\nu2\tx\nu1\ty\n")
    m = prepare_log("log", src, tmp_path / "a", header=False, columns=["user", "item"])
    assert (m.num_users, m.num_items) == (2, 2) and m.created_by["timestamps"] is False
    assert not InteractionData(tmp_path / "a", require_train=False).has_timestamps("all")
    src = write(tmp_path / "log.csv", "userId,movieId,rating,timestamp\n1,10,4.5,7\n2,10,1,8\n")
    m = prepare_log("log", src, tmp_path / "b", min_rating=4)  # columns found by name
    assert m.created_by["columns"] == {"user": "userId", "item": "movieId",
                                       "timestamp": "timestamp", "rating": "rating"}
    assert rows(tmp_path / "b") == [(0, 0, 7)]


def test_log_parquet_any_id_type(tmp_path: Path) -> None:
    src = tmp_path / "log.parquet"
    pq.write_table(pa.table({
        "uid": pa.array([30, 10, 20, 10]).dictionary_encode(),
        "item": pa.array([b"\x01", b"\x02", b"\x01", b"\x01"]),
        "ts": pa.array([3000, 1000, 2000, 1500], pa.timestamp("ms")),
    }), src)
    prepare_log("log", src, tmp_path / "ds", user_col="uid", time_col="ts")
    assert vocab(tmp_path / "ds", "users") == [10, 20, 30]
    assert vocab(tmp_path / "ds", "items") == [b"\x01", b"\x02"]
    assert rows(tmp_path / "ds") == [(0, 0, 1), (0, 1, 1), (1, 0, 2), (2, 0, 3)]  # seconds


def test_kcore_iterates_until_stable(tmp_path: Path) -> None:
    # A 2-core chain: dropping item 'z' (1 row) leaves user 'c' with 1 row, whose removal
    # leaves item 'y' with 1 row, ... so one round is not enough.
    lines = ["a,x", "a,y", "b,x", "b,y", "c,y", "c,z", "d,z", "d,w", "e,w"]
    src = write(tmp_path / "log.csv", "user,item\n" + "\n".join(lines) + "\n")
    m = prepare_log("log", src, tmp_path / "ds", kcore=2)
    assert m.created_by["dropped"]["kcore_rounds"] >= 2
    assert vocab(tmp_path / "ds", "users") == ["a", "b"]
    assert vocab(tmp_path / "ds", "items") == ["x", "y"]
    # Against brute force on a random log: the result is the largest k-core.
    rng = np.random.default_rng(0)
    u, i = rng.zipf(1.5, 3000) % 200, rng.zipf(1.3, 3000) % 300
    keep, dropped = filter_log(u, i, None, None, min_rating=None, kcore=5, dedup="earliest")
    ku, ki = u[keep], i[keep]
    assert (np.bincount(ku)[ku] >= 5).all() and (np.bincount(ki)[ki] >= 5).all()
    pairs_all = set(zip(u.tolist(), i.tolist()))
    alive = set(pairs_all)
    while True:
        uc: dict[int, int] = {}
        ic: dict[int, int] = {}
        for a, b in alive:
            uc[a] = uc.get(a, 0) + 1
            ic[b] = ic.get(b, 0) + 1
        nxt = {(a, b) for a, b in alive if uc[a] >= 5 and ic[b] >= 5}
        if nxt == alive:
            break
        alive = nxt
    assert set(zip(ku.tolist(), ki.tolist())) == alive
    assert dropped["duplicate_pairs"] + dropped["kcore"] == 3000 - len(alive)


def test_prepare_reports_drops_on_the_cli(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "u.data", "1\t1\t5\t1\n1\t2\t1\t2\n2\t1\t5\t3\n2\t1\t4\t4\n")
    assert main(["prepare", "--format", "movielens", "--input", str(src), "--min-rating", "4",
                 "--out", str(tmp_path / "ml")]) == 0
    out = capsys.readouterr().out
    assert ("prepare: read 4 rows; dropped 2: 1 with rating < 4, 1 duplicate (user, item) "
            "pairs; kept 2") in out
    assert "users.parquet (2 ids)" in out


# ---------------------------------------------------------------------------------- splits


@pytest.fixture(scope="module")
def log_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Skewed synthetic log with timestamps, merged into one unsplit 'all' split."""
    tmp = tmp_path_factory.mktemp("split")
    synth(600, 400, 12_000, tmp / "syn", seed=1, timestamps=True, zipf_a=1.0)
    data = InteractionData(tmp / "syn")
    with DatasetWriter(tmp / "all") as w:
        for s in data.split_names:
            w.append("all", *data.split(s), data.timestamps(s))
        w.finish("all", data.num_users, data.num_items, {"command": "test"})
    return tmp / "all"


def _check_partition(src: Path, out: Path) -> InteractionData:
    data = InteractionData(out, verify=True)
    whole = InteractionData(src, require_train=False)
    parts = [pairs(data, s) for s in data.split_names]
    assert sum(map(len, parts)) == whole.rows("all")
    assert set().union(*parts) == pairs(whole, "all")  # a partition of the input
    for a in range(len(parts)):
        for b in range(a + 1, len(parts)):
            assert not parts[a] & parts[b]
    everyone = np.unique(whole.split("all")[0])
    assert (data.user_counts("train")[everyone] >= 1).all()  # >= 1 train item per user
    return data


def test_split_random(log_ds: Path, tmp_path: Path) -> None:
    m = split_dataset(log_ds, tmp_path / "r", "random", test_fraction=0.2, valid_fraction=0.1,
                      seed=3)
    data = _check_partition(log_ds, tmp_path / "r")
    n_u = np.bincount(InteractionData(log_ds, require_train=False).split("all")[0])
    want = np.minimum(np.floor(0.2 * n_u + 0.5), n_u - 1)
    assert (data.user_counts("test")[: n_u.size] == want).all()  # per-user fraction
    n_train = n_u - want
    want_v = np.minimum(np.floor(0.1 * n_train + 0.5), n_train - 1)
    assert (data.user_counts("valid")[: n_u.size] == want_v).all()
    assert m.created_by["protocol"] == "random" and m.created_by["seed"] == 3
    counts = m.created_by["counts"]
    assert {k: v["rows"] for k, v in counts.items()} == {s: data.rows(s) for s in
                                                        ("train", "valid", "test")}
    again = split_dataset(log_ds, tmp_path / "r2", "random", seed=3)
    other = split_dataset(log_ds, tmp_path / "r3", "random", seed=4)
    assert again.splits == m.splits and other.splits["test"] != m.splits["test"]
    assert data.has_timestamps("test")


def test_split_temporal(log_ds: Path, tmp_path: Path) -> None:
    split_dataset(log_ds, tmp_path / "t", "temporal", test_fraction=0.2, valid_fraction=0.1)
    data = _check_partition(log_ds, tmp_path / "t")
    latest_train = np.full(data.num_users, -1)
    np.maximum.at(latest_train, data.split("train")[0], data.timestamps("train"))
    for s in ("valid", "test"):  # everything held out is later than the user's train rows
        u = data.split(s)[0]
        assert (data.timestamps(s) >= latest_train[u]).all()
    earliest_test = np.full(data.num_users, np.iinfo(np.int64).max)
    np.minimum.at(earliest_test, data.split("test")[0], data.timestamps("test"))
    assert (data.timestamps("valid") <= earliest_test[data.split("valid")[0]]).all()
    # The synth generator dates each user's test rows last with the same rounding:
    # temporal = its own test split.
    syn = InteractionData(log_ds.parent / "syn")
    assert pairs(syn, "test") == pairs(data, "test")

    m = split_dataset(log_ds, tmp_path / "loo", "temporal", leave_last=1, valid_fraction=0.1)
    loo = _check_partition(log_ds, tmp_path / "loo")
    assert (loo.user_counts("test")[:600] == 1).all()
    assert (loo.user_counts("valid")[:600] == 1).all()
    assert m.created_by["leave_last"] == 1 and m.created_by["test_fraction"] is None


def test_split_ood_popularity(log_ds: Path, tmp_path: Path) -> None:
    m = split_dataset(log_ds, tmp_path / "o", "ood-popularity", test_fraction=0.2,
                      valid_fraction=0.1, seed=0)
    data = _check_partition(log_ds, tmp_path / "o")
    whole = InteractionData(log_ds, require_train=False)
    n = whole.rows("all")
    assert data.rows("test") == round(0.2 * n)  # the fraction is met exactly
    assert data.rows("valid") == round(0.1 * (n - data.rows("test")))
    items_all = np.unique(whole.split("all")[1])
    assert (data.item_counts("train")[items_all] >= 1).all()  # >= 1 train row per item
    # The test item distribution is much flatter than train's. Measure: Gini coefficient of
    # the per-item counts over the items of the dataset (0 = uniform).
    g_train = gini(data.item_counts("train")[items_all])
    g_test = gini(data.item_counts("test")[items_all])
    assert g_train > 0.5 and g_test < 0.6 * g_train, (g_train, g_test)
    # ... while a random test split of the same size stays skewed like train.
    split_dataset(log_ds, tmp_path / "r", "random", seed=0)
    rnd = InteractionData(tmp_path / "r")
    assert gini(rnd.item_counts("test")[items_all]) > g_test + 0.15
    assert m.created_by["counts"]["test"]["gini_item_counts"] == pytest.approx(g_test, abs=1e-4)
    assert m.created_by["counts"]["test"]["items_unseen_in_train"] == 0


def test_split_ood_impossible_fraction(log_ds: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cannot hold out .* item-uniformly.*expected a "
                       r"fraction <= 0\.\d+"):
        split_dataset(log_ds, tmp_path / "x", "ood-popularity", test_fraction=0.99)
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.tmp-*"))


def test_split_keeps_vocabularies(tmp_path: Path) -> None:
    src = write(tmp_path / "u.data", "".join(f"{u}\t{i}\t5\t{u * 10 + i}\n"
                                             for u in (7, 8, 9) for i in (1, 2, 3, 4)))
    prepare_log("movielens", src, tmp_path / "ml")
    m = split_dataset(tmp_path / "ml", tmp_path / "s", "temporal", leave_last=1,
                      valid_fraction=0)
    assert set(m.splits) == {"train", "test"} and set(m.files) == {"users", "items"}
    assert vocab(tmp_path / "s", "users") == [7, 8, 9]
    assert rows(tmp_path / "s", "test") == [(0, 3, 74), (1, 3, 84), (2, 3, 94)]
    InteractionData(tmp_path / "s", verify=True)


def test_split_needs_timestamps_for_temporal(tmp_path: Path) -> None:
    src = write(tmp_path / "log.tsv", "user\titem\n1\t2\n1\t3\n")
    prepare_log("log", src, tmp_path / "ds")
    with pytest.raises(DataError, match=r"all.parquet field 'timestamp': no timestamp column"):
        split_dataset(tmp_path / "ds", tmp_path / "t", "temporal")
    with pytest.raises(DataError, match="leave_last"):
        split_dataset(tmp_path / "ds", tmp_path / "t", "random", leave_last=2)


def test_split_empty_test(tmp_path: Path) -> None:
    src = write(tmp_path / "log.tsv", "user\titem\n1\t2\n2\t3\n")  # one row per user
    prepare_log("log", src, tmp_path / "ds")
    with pytest.raises(DataError, match=r"the random test split would be empty.*users with >= 2"):
        split_dataset(tmp_path / "ds", tmp_path / "s", "random")
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------------- inspect


def test_inspect_and_plot(log_ds: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    split_dataset(log_ds, tmp_path / "o", "ood-popularity", seed=0)
    text = inspect_text(tmp_path / "o")
    assert "made by split --protocol ood-popularity --seed 0" in text
    assert "train ∩ test: 0 (user, item) pairs  ok" in text
    assert "test: 0 users and 0 items not in train  ok" in text
    assert "top-1% items (4) hold" in text and "bottom 50% hold" in text
    png = plot_popularity(tmp_path / "o", tmp_path / "p" / "pop.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["inspect", str(tmp_path / "o"), "--plot", "--plot-path",
                 str(tmp_path / "q.png")]) == 0
    out = capsys.readouterr().out
    assert f"saved popularity histogram to {tmp_path / 'q.png'}" in out
    assert (tmp_path / "q.png").is_file()


def test_inspect_flags_overlap_and_unseen_users(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds") as w:
        w.append("train", np.array([0, 1]), np.array([0, 1]))
        w.append("test", np.array([0, 2]), np.array([0, 1]))  # (0, 0) in both; user 2 cold
        w.finish("bad", 3, 2, {})
    text = inspect_text(tmp_path / "ds")
    assert "train ∩ test: 1 (user, item) pairs  OVERLAP" in text
    assert "test: 1 users and 0 items not in train  USERS UNSEEN IN TRAIN" in text


# ------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    ("fmt", "name", "text", "kw", "expect"),
    [
        # malformed lines
        ("movielens", "u.data", "1\t2\t5\t9\n1\t3\t4\n", {},
         "u.data:2: 3 field(s) on the line (expected 4 tab-separated fields"),
        ("movielens", "ratings.dat", "1::2::5::9\n\n1::3::4::9::0\n", {},
         "ratings.dat:3: 5 field(s) on the line (expected 4 '::'-separated fields"),
        ("log", "log.csv", "user,item\na,b\n\n\nc\n", {},
         "log.csv:5: 1 field(s) on the line (expected 2 comma-separated fields: user, item)"),
        # non-numeric values where numbers are expected
        ("movielens", "u.data", "1\t2\t5\t9\nx7\t3\t4\t9\n", {},
         "u.data:2 field 'user': non-numeric user 'x7' (expected an integer)"),
        ("movielens", "u.data", "1\t2\t5\t9\n1\t3\tfive\t9\n", {},
         "u.data:2 field 'rating': non-numeric rating 'five' (expected a number)"),
        ("log", "log.tsv", "user\titem\ttimestamp\n" + "a\tb\t5\n" * 3 + "a\tc\tsoon\n", {},
         "log.tsv:5 field 'timestamp': timestamp 'soon' is not an integer"),
        ("log", "log.tsv", "user\titem\ttimestamp\na\tb\tnever\n", {},
         "log.tsv:2 field 'timestamp': timestamp 'never' is not a number or an ISO-8601"),
        ("log", "log.csv", "user,item,rating\na,b,5\nc,d,lots\n", {},
         "log.csv:3 field 'rating': non-numeric rating 'lots' (expected a number)"),
        # missing ids / columns
        ("log", "log.csv", "user,item\na,b\n ,d\n", {},
         "log.csv:3 field 'user': empty user id (expected a non-empty user id)"),
        ("log", "log.csv", "who,item\na,b\n", {},
         "log.csv: no user column (expected a column named one of user_id, user"),
        ("log", "log.csv", "user,item\na,b\n", {"time_col": "when"},
         "log.csv field 'when': no column 'when' (given for the timestamp) (expected one of the "
         "columns 'user', 'item')"),
        ("log", "log.csv", "user,item\n", {}, "log.csv: no interactions"),
        ("log", "log.csv", "user,item\na,b\n", {"min_rating": 3},
         "log.csv: --min-rating given but the log has no rating column"),
        ("movielens", "u.data", "1\t2\t1\t9\n", {"min_rating": 4},
         "u.data: no interactions left after filtering"),
    ],
)
def test_bad_logs_are_reported_with_file_and_line(tmp_path: Path, fmt: str, name: str,
                                                  text: str, kw: dict, expect: str) -> None:
    src = write(tmp_path / name, text)
    with pytest.raises(DataError) as err:
        prepare_log(fmt, src, tmp_path / "ds", **kw)
    assert str(err.value).startswith(str(tmp_path / name)), err.value
    assert expect in str(err.value), str(err.value)
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.*"))  # no half-write


def test_bad_parquet_log_names_the_row(tmp_path: Path) -> None:
    src = tmp_path / "log.parquet"
    pq.write_table(pa.table({"user": [1, 2, None], "item": ["a", "b", "c"]}), src)
    with pytest.raises(DataError, match=r"log.parquet row 2 field 'user': missing user id"):
        prepare_log("log", src, tmp_path / "ds")
    with pytest.raises(DataError, match="nope.csv: file not found"):
        prepare_log("log", tmp_path / "nope.csv", tmp_path / "ds")


def test_negative_id_in_prepared_dataset(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds") as w:
        w.append("train", np.array([0, -1, 1]), np.array([0, 1, 1]))
        w.finish("neg", num_users=2, num_items=2, created_by={})
    with pytest.raises(DataError) as err:
        InteractionData(tmp_path / "ds")
    assert ("train.parquet row 1 field 'user_id': id -1 out of range (expected 0 <= user_id < "
            "num_users = 2)") in str(err.value)


def test_empty_split_file(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds") as w:
        w.append("train", np.array([0]), np.array([0]))
        w.finish("x", 1, 1, {})
    empty_table = pa.table({"user_id": pa.array([], pa.int64()),
                            "item_id": pa.array([], pa.int64())})
    pq.write_table(empty_table, tmp_path / "ds" / "test.parquet")
    raw = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    raw["splits"]["test"] = {"file": "test.parquet", "rows": 0, "sha256": "0" * 64}
    (tmp_path / "ds" / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"test.parquet: test split is empty \(expected at least "
                       r"one interaction\)"):
        InteractionData(tmp_path / "ds")
    train = write(tmp_path / "train.txt", "0 1\n")
    empty = write(tmp_path / "test.txt", "\n")
    with pytest.raises(DataError, match=r"test.txt: no interactions in the test file"):
        prepare("lightgcn", train, empty, tmp_path / "new")


def test_vocabulary_checks(tmp_path: Path) -> None:
    src = write(tmp_path / "u.data", "1\t1\t5\t1\n2\t2\t5\t2\n")
    prepare_log("movielens", src, tmp_path / "ml")
    raw = json.loads((tmp_path / "ml" / "manifest.json").read_text())
    raw["files"]["items"]["sha256"] = "f" * 64
    (tmp_path / "ml" / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"items.parquet field 'sha256': sha256 .* differs"):
        InteractionData(tmp_path / "ml", verify=True, require_train=False)
    raw["num_users"] = 3
    (tmp_path / "ml" / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"users.parquet field 'rows': vocabulary has 2 rows but "
                       r"the manifest says num_users = 3"):
        Manifest.read(tmp_path / "ml").verify(tmp_path / "ml")
    (tmp_path / "ml" / "users.parquet").unlink()
    with pytest.raises(DataError, match=r"users.parquet: 'users' file is missing"):
        Manifest.read(tmp_path / "ml").verify(tmp_path / "ml")


def test_unseen_test_users_are_reported(tmp_path: Path) -> None:
    train = write(tmp_path / "train.tsv", "user_procid\titem_procid\n0\t1\n1\t2\n")
    test = write(tmp_path / "test.tsv", "user_procid\titem_procid\n0\t2\n\n5\t1\n3\t0\n")
    with pytest.raises(DataError) as err:
        prepare("irb", train, test, tmp_path / "ds")
    assert str(err.value).startswith(f"{test}:4: user 5 has no interaction in the train file "
                                     "(2 such users)")
    assert "--allow-unseen-users" in str(err.value)
    assert not (tmp_path / "ds").exists()
    prepare("irb", train, test, tmp_path / "ds", valid_fraction=0, allow_unseen_users=True)
    InteractionData(tmp_path / "ds")  # opening does not read the columns ...
    with pytest.raises(DataError) as err:  # ... verify does
        InteractionData(tmp_path / "ds", verify=True)
    assert ("test.parquet row 1 field 'user_id': user 3 has no train interaction (2 such users, "
            "2 rows) (expected every test user to have at least one train interaction)"
            ) in str(err.value)
    assert main(["verify", str(tmp_path / "ds")]) == 2


def test_failed_split_keeps_old_output(log_ds: Path, tmp_path: Path) -> None:
    m = split_dataset(log_ds, tmp_path / "s", "random")
    with pytest.raises(DataError):
        split_dataset(log_ds, tmp_path / "s", "ood-popularity", test_fraction=0.99,
                      overwrite=True)
    assert Manifest.read(tmp_path / "s") == m
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


# ------------------------------------------------------------------------------------- CLI


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "--format", "movielens", "--out", str(tmp_path / "x")]) == 2
    assert "--input FILE is required with --format movielens" in capsys.readouterr().err
    assert main(["prepare", "--format", "irb", "--input", "a", "--out", str(tmp_path / "x")]) == 2
    assert "--train FILE and --test FILE are required" in capsys.readouterr().err
    assert main(["split", "--in", str(tmp_path), "--out", str(tmp_path / "y"), "--protocol",
                 "temporal", "--leave-last", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsl-data: error: ") and "field 'leave_last': leave_last=0" in err


# ------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (SHARED_DATA / "ml-100k" / "u.data").is_file(),
                    reason=f"raw MovieLens-100K not present at {SHARED_DATA / 'ml-100k'}")
def test_real_movielens_100k_temporal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ml, out = tmp_path / "ml100k", tmp_path / "ml100k-temporal"
    assert main(["prepare", "--format", "movielens", "--input",
                 str(SHARED_DATA / "ml-100k" / "u.data"), "--min-rating", "4",
                 "--out", str(ml)]) == 0
    text = capsys.readouterr().out
    # README: 55,375 ratings are >= 4; one of the 943 users has none, all 1,682 items -> 1,447.
    assert "read 100,000 rows; dropped 44,625: 44,625 with rating < 4" in text
    m = Manifest.read(ml)
    assert (m.num_users, m.num_items, m.splits["all"]["rows"]) == (942, 1447, 55375)
    assert main(["split", "--in", str(ml), "--protocol", "temporal", "--test-fraction", "0.2",
                 "--valid-fraction", "0.1", "--out", str(out)]) == 0
    data = _check_partition(ml, out)
    n_u = np.bincount(InteractionData(ml, require_train=False).split("all")[0])
    n_test = np.minimum(np.maximum(np.floor(0.2 * n_u + 0.5), 1), n_u - 1)
    assert (data.user_counts("test") == n_test).all()
    assert data.rows("test") == int(n_test.sum()) == 11079
    assert data.rows("train") + data.rows("valid") + data.rows("test") == 55375
    assert main(["inspect", str(out)]) == 0
    assert "train ∩ test: 0 (user, item) pairs  ok" in capsys.readouterr().out
