"""MovieLens loading: real files when present, lookup order, formats, malformed lines, the .npz cache."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest

from membed.data import (
    MOVIELENS,
    DataError,
    DatasetUnavailable,
    RatingsData,
    default_cache_dir,
    find_movielens,
    load_movielens,
    random_split,
)
from membed.data import download as download_module

REPO = Path(__file__).resolve().parents[1]


def _shared_movielens() -> Path | None:
    for candidate in (os.environ.get("MEMBED_DATA_DIR"), REPO.parent / "shared" / "data" / "movielens"):
        if candidate and (Path(candidate) / "ml-100k" / "u.data").is_file():
            return Path(candidate).resolve()
    return None


SHARED = _shared_movielens()
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared MovieLens copies not found (set MEMBED_DATA_DIR)")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No environment leaks in, the cache is private, and any download attempt fails the test."""
    monkeypatch.delenv("MEMBED_DATA_DIR", raising=False)
    monkeypatch.delenv("MEMBED_MOVIELENS_URL", raising=False)
    monkeypatch.setenv("MEMBED_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise AssertionError("test_movielens must not download")

    monkeypatch.setattr(download_module.urllib.request, "urlopen", no_network)


def expect_sizes(monkeypatch, name: str, rows: list[tuple]) -> None:
    """Makes the sizes of `rows` the ones dataset `name` must have, so that a tiny copy passes as the dataset."""
    sizes = {"num_ratings": len(rows), "num_users": len({row[0] for row in rows}),
             "num_items": len({row[1] for row in rows})}
    monkeypatch.setitem(MOVIELENS, name, dataclasses.replace(MOVIELENS[name], **sizes))


@pytest.fixture
def write_dataset(monkeypatch):
    """`write(base, name, rows, raw=None)`: a tiny extracted dataset `base/name/` in its own format, sizes expected."""

    def write(base: Path, name: str, rows: list[tuple], raw: str | None = None) -> Path:
        info = MOVIELENS[name]
        folder = base / info.folder
        folder.mkdir(parents=True, exist_ok=True)
        if raw is None:
            if info.format == "tsv":
                raw = "".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, r, t in rows)
            elif info.format == "dat":
                raw = "".join(f"{u}::{i}::{r:g}::{t}\n" for u, i, r, t in rows)
            else:
                raw = "userId,movieId,rating,timestamp\r\n" + "".join(
                    f"{u},{i},{r:.1f},{t}\r\n" for u, i, r, t in rows
                )
        (folder / info.ratings_file).write_bytes(raw.encode())
        expect_sizes(monkeypatch, name, rows)
        return folder

    return write


ROWS = [(7, 30, 4, 881250949), (3, 30, 2, 891717742), (7, 11, 5, 878887116), (9, 12, 1, 880606923)]


# ----- the real copies -------------------------------------------------------


def first_lines(path: Path, count: int, separator: str, skip: int = 0) -> list[list[str]]:
    with open(path, encoding="utf-8") as stream:
        lines = [next(stream) for _ in range(count + skip)][skip:]
    return [line.rstrip("\r\n").split(separator) for line in lines]


def first_appearance(values: list[int]) -> list[int]:
    return list(dict.fromkeys(values))


@needs_shared
@pytest.mark.parametrize(
    "name, ratings, users, items, separator, skip, low, high",
    [
        ("ml-100k", 100_000, 943, 1_682, "\t", 0, 1.0, 5.0),
        ("ml-latest-small", 100_836, 610, 9_724, ",", 1, 0.5, 5.0),
    ],
)
def test_real_dataset_sizes_and_first_appearance(name, ratings, users, items, separator, skip, low, high, tmp_path):
    data = load_movielens(name, data_dir=SHARED, download=False)
    assert (len(data), data.num_users, data.num_items) == (ratings, users, items)
    assert data.name == name
    assert data.users.dtype == np.int32 and data.items.dtype == np.int32 and data.ratings.dtype == np.float32
    assert data.user_counts.dtype == np.int64
    assert data.user_counts.sum() == ratings and data.item_counts.sum() == ratings
    assert data.user_counts.min() >= 1 and data.item_counts.min() >= 1
    np.testing.assert_array_equal(data.user_counts, np.bincount(data.users, minlength=users))
    assert data.ratings.min() == low and data.ratings.max() == high
    assert len(np.unique(data.user_vocab)) == users and len(np.unique(data.item_vocab)) == items

    head = first_lines(SHARED / MOVIELENS[name].ratings_path, 200, separator, skip)
    expected_users = first_appearance([int(fields[0]) for fields in head])
    expected_items = first_appearance([int(fields[1]) for fields in head])
    np.testing.assert_array_equal(data.user_vocab[: len(expected_users)], expected_users)
    np.testing.assert_array_equal(data.item_vocab[: len(expected_items)], expected_items)
    # Row order is the file's: row k maps back to line k's raw ids and rating.
    for row, fields in enumerate(head[:20]):
        assert data.user_vocab[data.users[row]] == int(fields[0])
        assert data.item_vocab[data.items[row]] == int(fields[1])
        assert data.ratings[row] == float(fields[2])
    # Nothing is written next to a read-only shared copy, and nothing was cached.
    assert not (default_cache_dir() / f"{name}.npz").exists()


@needs_shared
def test_partial_shared_folder_does_not_count():
    assert find_movielens("ml-1m", data_dir=SHARED) is None
    with pytest.raises(DatasetUnavailable, match="ml-1m/ratings.dat not found"):
        load_movielens("ml-1m", data_dir=SHARED, download=False)


@needs_shared
def test_real_split_is_reproducible():
    data = load_movielens("ml-100k", data_dir=SHARED, download=False)
    train_index, val_index = random_split(len(data))
    train, val = data.subset(train_index), data.subset(val_index)
    assert len(train) + len(val) == len(data)
    assert 0.84 < len(train) / len(data) < 0.86
    assert train.num_users == data.num_users and train.user_counts is data.user_counts


# ----- lookup order ---------------------------------------------------------


def test_explicit_dir_beats_environment_beats_cache(write_dataset, tmp_path, monkeypatch):
    explicit, from_env, cache = tmp_path / "explicit", tmp_path / "env", tmp_path / "cache"
    write_dataset(explicit, "ml-100k", [(1, 1, 1, 0)])
    write_dataset(from_env, "ml-100k", [(2, 2, 2, 0)])
    write_dataset(cache, "ml-100k", [(3, 3, 3, 0)])
    monkeypatch.setenv("MEMBED_DATA_DIR", str(from_env))

    assert find_movielens("ml-100k", data_dir=explicit) == explicit / "ml-100k"
    assert load_movielens("ml-100k", data_dir=explicit, download=False).user_vocab.tolist() == [1]
    assert load_movielens("ml-100k", download=False).user_vocab.tolist() == [2]
    monkeypatch.delenv("MEMBED_DATA_DIR")
    assert load_movielens("ml-100k", download=False).user_vocab.tolist() == [3]
    assert find_movielens("ml-100k") == cache / "ml-100k"


def test_explicit_cache_dir_argument_beats_environment_cache(write_dataset, tmp_path):
    other = tmp_path / "other-cache"
    write_dataset(other, "ml-100k", [(5, 5, 5, 0)])
    assert find_movielens("ml-100k") is None
    assert load_movielens("ml-100k", cache_dir=other, download=False).user_vocab.tolist() == [5]


def test_folder_without_ratings_file_is_skipped(write_dataset, tmp_path, monkeypatch):
    partial = tmp_path / "shared"
    (partial / "ml-1m").mkdir(parents=True)
    (partial / "ml-1m" / "users.dat").write_text("1::F::1::10::48067\n")
    write_dataset(tmp_path / "cache", "ml-1m", ROWS)
    monkeypatch.setenv("MEMBED_DATA_DIR", str(partial))
    assert find_movielens("ml-1m", data_dir=partial) == tmp_path / "cache" / "ml-1m"
    assert len(load_movielens("ml-1m", data_dir=partial, download=False)) == len(ROWS)


def test_missing_dataset_without_download_says_how_to_provide_it(tmp_path):
    with pytest.raises(DatasetUnavailable) as error:
        load_movielens("ml-latest-small", download=False)
    message = str(error.value)
    assert "ml-latest-small/ratings.csv" in message and str(tmp_path / "cache") in message
    assert "MEMBED_DATA_DIR" in message and "data_dir" in message and "download" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "layout, note",
    [
        ("missing", "is not a folder"),
        ("empty", r"holds no ml-\* folder \(it is empty\)"),
        ("files", r"holds no ml-\* folder \(it holds a, b, c, d, e and 1 more\)"),
        ("ratings file inside", r"points at the dataset folder itself; set it to its parent, {parent}"),
        ("named after the dataset", r"points at the dataset folder itself; set it to its parent, {parent}"),
        ("another dataset's folder", r"points at the dataset folder itself; set it to its parent, {parent}"),
    ],
)
def test_what_is_wrong_with_membed_data_dir_is_said(layout, note, tmp_path, monkeypatch):
    parent = tmp_path / "movielens"
    folder = {"named after the dataset": parent / "ml-100k", "another dataset's folder": parent / "ml-1m"}.get(
        layout, parent / "data"
    )
    if layout != "missing":
        folder.mkdir(parents=True)
    if layout == "files":
        for name in ("a", "b", "c", "d", "e", "ml-100k.zip"):  # a zip is not an extracted folder
            (folder / name).write_text("")
    elif layout == "ratings file inside":
        (folder / "u.data").write_text("1\t2\t3\t4\n")
    elif layout == "another dataset's folder":
        (folder / "ratings.dat").write_text("1::2::3::4\n")
    monkeypatch.setenv("MEMBED_DATA_DIR", str(folder))
    with pytest.raises(DatasetUnavailable) as error:
        load_movielens("ml-100k", download=False)
    message = str(error.value)
    assert re.search(rf"; \$MEMBED_DATA_DIR {re.escape(str(folder))} {note.format(parent=re.escape(str(parent)))}; "
                     r"set MEMBED_DATA_DIR to a folder holding ml-100k/", message), message
    assert "\n" not in message


def test_membed_data_dir_set_to_the_dataset_folder_itself_is_used_with_a_warning(
    write_dataset, tmp_path, monkeypatch, caplog
):
    folder = write_dataset(tmp_path / "movielens", "ml-100k", ROWS)
    monkeypatch.setenv("MEMBED_DATA_DIR", str(folder))
    with caplog.at_level(logging.WARNING, logger="membed.data.movielens"):
        assert len(load_movielens("ml-100k", download=False)) == len(ROWS)
    assert f"is the ml-100k folder itself; using it, but set it to its parent, {tmp_path / 'movielens'}" in caplog.text
    assert find_movielens("ml-100k") == folder


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"Unknown MovieLens dataset: 'ml-10m'\. Use one of: ml-100k, ml-1m"):
        load_movielens("ml-10m")
    with pytest.raises(ValueError, match="Unknown MovieLens dataset"):
        find_movielens("ML-100K")
    with pytest.raises(ValueError, match="Invalid `data_dir`: .*is not a folder"):
        load_movielens("ml-100k", data_dir="/nonexistent/membed-data")
    with pytest.raises(ValueError, match="Invalid `download`"):
        load_movielens("ml-100k", download="yes")


def test_default_cache_dir(monkeypatch, tmp_path):
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("MEMBED_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "membed"


# ----- formats ------------------------------------------------------------


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "ml-latest-small", "ml-20m", "ml-25m"])
def test_every_format_parses_with_first_appearance_indices(write_dataset, name, tmp_path):
    rows = [(u, i, r / 2 if MOVIELENS[name].format == "csv" else r, t) for u, i, r, t in ROWS]
    data = load_movielens(name, data_dir=write_dataset(tmp_path / "data", name, rows).parent, download=False)
    assert data.user_vocab.tolist() == [7, 3, 9]
    assert data.item_vocab.tolist() == [30, 11, 12]
    assert data.users.tolist() == [0, 1, 0, 2] and data.items.tolist() == [0, 0, 1, 2]
    assert data.ratings.tolist() == [r for _, _, r, _ in rows]
    assert data.user_counts.tolist() == [2, 1, 1] and data.item_counts.tolist() == [2, 1, 1]


def test_blank_trailing_lines_are_ignored(write_dataset, tmp_path):
    folder = write_dataset(tmp_path / "data", "ml-100k", [(1, 2, 3, 4), (5, 6, 4, 8)])
    with open(folder / "u.data", "a") as ratings:
        ratings.write("\n")
    assert len(load_movielens("ml-100k", data_dir=tmp_path / "data", download=False)) == 2


# ----- malformed files --------------------------------------------------------

GOOD_TSV = "1\t2\t3\t4\n"


@pytest.mark.parametrize(
    "name, raw, message",
    [
        ("ml-100k", GOOD_TSV * 16 + "1\t2\t3\n" + GOOD_TSV,
         r"^ml-100k/u\.data line 17: expected 4 tab-separated fields, got 3\.$"),
        # pandas silently drops an extra field on the first line; the loader must not.
        ("ml-100k", "1\t2\t3\t4\t5\n" + GOOD_TSV,
         r"^ml-100k/u\.data line 1: expected 4 tab-separated fields, got 5\.$"),
        ("ml-100k", GOOD_TSV + "1\t2\t3\t4\t5\n", r"ml-100k/u\.data line 2: expected 4 tab-separated fields, got 5"),
        ("ml-100k", GOOD_TSV * 2 + "1\t2\tgood\t4\n", r"ml-100k/u\.data line 3: rating is not a number: 'good'"),
        ("ml-100k", GOOD_TSV + "x\t2\t3\t4\n", r"ml-100k/u\.data line 2: user is not an integer: 'x'"),
        ("ml-100k", GOOD_TSV * 3 + "1\t2\t7\t4\n", r"ml-100k/u\.data line 4: rating 7\.0 is outside \[0\.5, 5\.0\]"),
        ("ml-100k", "", r"ml-100k/u\.data: holds no ratings"),
        ("ml-1m", "1::2::3::4\n1::2::3\n", r"ml-1m/ratings\.dat line 2: expected 4 '::'-separated fields, got 3"),
        ("ml-1m", "1::2::3::4\n1:2:3:4:5:6:7\n", r"ml-1m/ratings\.dat line 2: expected 4 '::'-separated fields, got 1"),
        ("ml-latest-small", "userId,movieId,rating,timestamp\r\n1,2,3.5,4\r\n1,2,3.5\r\n",
         r"ml-latest-small/ratings\.csv line 3: expected 4 comma-separated fields, got 3"),
        ("ml-latest-small", "user,movie,rating,time\n1,2,3.5,4\n",
         r"ml-latest-small/ratings\.csv line 1: expected header 'userId,movieId,rating,timestamp'"),
        ("ml-latest-small", "userId,movieId,rating,timestamp\r\n", r"ml-latest-small/ratings\.csv: holds no ratings"),
    ],
)
def test_malformed_file_names_file_and_line(write_dataset, name, raw, message, tmp_path):
    write_dataset(tmp_path / "data", name, [], raw=raw)
    with pytest.raises(DataError, match=message):
        load_movielens(name, data_dir=tmp_path / "data", download=False)


# ----- known sizes -------------------------------------------------------------


def test_recorded_dataset_sizes():
    # GroupLens' figures (ratings, users, rated items); a load that finds others fails.
    assert {name: (info.num_ratings, info.num_users, info.num_items) for name, info in MOVIELENS.items()} == {
        "ml-100k": (100_000, 943, 1_682),
        "ml-1m": (1_000_209, 6_040, 3_706),
        "ml-latest-small": (100_836, 610, 9_724),
        "ml-20m": (20_000_263, 138_493, 26_744),
        "ml-25m": (25_000_095, 162_541, 59_047),
    }


def test_other_sizes_than_the_datasets_are_refused_also_from_the_npz_cache(write_dataset, monkeypatch, tmp_path):
    write_dataset(tmp_path / "cache", "ml-100k", ROWS)
    assert len(load_movielens("ml-100k", download=False)) == len(ROWS)  # parsed, checked, kept as .npz
    expect_sizes(monkeypatch, "ml-100k", ROWS + [(11, 30, 3, 0)])
    message = (r"^ml-100k/u\.data: expected 5 ratings \(4 users, 3 items\), found 4 ratings \(3 users, 3 items\); "
               r"the file is incomplete or not ml-100k\.$")
    with pytest.raises(DataError, match=message):
        load_movielens("ml-100k", download=False)  # served from the .npz
    npz = tmp_path / "cache" / "ml-100k.npz"
    npz.unlink()
    with pytest.raises(DataError, match=message):
        load_movielens("ml-100k", download=False)  # parsed
    assert not npz.exists()  # a wrong file is not cached


@needs_shared
def test_real_file_cut_at_a_line_boundary_is_refused(tmp_path):
    with open(SHARED / "ml-100k" / "u.data", "rb") as stream:
        head = b"".join(next(stream) for _ in range(50_703))
    (tmp_path / "cut" / "ml-100k").mkdir(parents=True)
    (tmp_path / "cut" / "ml-100k" / "u.data").write_bytes(head)
    with pytest.raises(DataError, match=r"^ml-100k/u\.data: expected 100000 ratings \(943 users, 1682 items\), "
                                        r"found 50703 ratings \(\d+ users, \d+ items\); the file is incomplete or "
                                        r"not ml-100k\.$"):
        load_movielens("ml-100k", data_dir=tmp_path / "cut", download=False)


# ----- RatingsData and the .npz cache ------------------------------------------


def test_cached_dataset_is_stored_as_npz_and_refreshed_when_the_source_changes(write_dataset, tmp_path):
    cache = tmp_path / "cache"
    source = write_dataset(cache, "ml-100k", ROWS) / "u.data"
    first = load_movielens("ml-100k", download=False)
    npz = cache / "ml-100k.npz"
    assert npz.is_file()
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []

    again = load_movielens("ml-100k", download=False)
    for key in ("users", "items", "ratings", "user_vocab", "item_vocab", "user_counts", "item_counts"):
        np.testing.assert_array_equal(getattr(again, key), getattr(first, key))
        assert getattr(again, key).dtype == getattr(first, key).dtype

    write_dataset(cache, "ml-100k", [(42, 1, 5, 0)])
    os.utime(source, ns=(1, 1))
    assert load_movielens("ml-100k", download=False).user_vocab.tolist() == [42]

    npz.write_bytes(b"not an npz")
    assert load_movielens("ml-100k", download=False).user_vocab.tolist() == [42]


def test_subset_keeps_vocab_and_counts(write_dataset, tmp_path):
    data = load_movielens("ml-100k", data_dir=write_dataset(tmp_path / "d", "ml-100k", ROWS).parent, download=False)
    part = data.subset(np.array([3, 0]))
    assert part.users.tolist() == [2, 0] and part.ratings.tolist() == [1.0, 4.0]
    assert part.user_vocab is data.user_vocab and part.item_counts is data.item_counts
    assert len(data.subset(np.array([True, False, True, False]))) == 2
    with pytest.raises(ValueError, match="invalid `index` dtype"):
        data.subset(np.array([0.5]))
    assert "ratings=4, users=3, items=3" in repr(data)


def test_ratings_data_rejects_mismatched_lengths():
    empty = np.zeros(0, dtype=np.int64)
    with pytest.raises(ValueError, match="one length"):
        RatingsData(
            "x", np.zeros(2, np.int32), np.zeros(1, np.int32), np.zeros(2, np.float32), empty, empty, empty, empty
        )
