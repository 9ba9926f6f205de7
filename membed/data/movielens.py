"""MovieLens ratings as integer-indexed arrays, from a local copy, the cache or a download.

`load_movielens("ml-100k")` looks for the extracted folder (`ml-100k/` holding
`u.data`) in this order: the `data_dir` argument, `$MEMBED_DATA_DIR`, the
cache folder (`cache_dir`, else `$MEMBED_CACHE_DIR`, else `~/.cache/membed`).
A folder without the ratings file does not count; one that is the dataset
folder itself (`$MEMBED_DATA_DIR=.../ml-100k`) is used, with a warning. When
none has it, the official zip is downloaded into the cache, verified and
extracted (see `membed.data.download`). The numbers of ratings, users and items
loaded must be the dataset's recorded ones, so a cut file is not mistaken for
the dataset.

Users and items are re-indexed `0 .. n-1` in order of first appearance in the
ratings file, as the Keras collaborative-filtering example does with
`df["userId"].unique()`, so index 0 is the user on the file's first line.

References:
    F. Maxwell Harper and Joseph A. Konstan, "The MovieLens Datasets: History
    and Context", ACM Transactions on Interactive Intelligent Systems 5(4), 2015.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from membed.data.download import DataError, DatasetUnavailable, fetch_dataset

DATA_DIR_ENV = "MEMBED_DATA_DIR"
CACHE_DIR_ENV = "MEMBED_CACHE_DIR"
# MovieLens ratings are whole stars (ml-100k, ml-1m) or half stars (later sets) in this range.
RATING_RANGE = (0.5, 5.0)
# Bump when the arrays a cached .npz holds change meaning, so old caches are re-parsed.
NPZ_VERSION = 1
FIELD_NAMES = ("user", "item", "rating", "timestamp")

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Where one MovieLens dataset comes from and how its ratings file is laid out.

    Attributes:
        name: dataset name, also the name of the folder the zip extracts to.
        url: official archive address.
        size: archive size in bytes.
        sha256: archive sha256, hex.
        ratings_file: ratings file, relative to the extracted folder.
        format: `tsv` (`user item rating timestamp`, tab-separated), `dat`
            (`::`-separated) or `csv` (header `userId,movieId,rating,timestamp`).
        num_ratings: ratings the complete file holds; a load that finds
            another number (or other user or item counts) fails, so that a
            cut or wrong file is not taken for the dataset.
        num_users: distinct users in the ratings file.
        num_items: distinct items in the ratings file (the rated movies).
    """

    name: str
    url: str
    size: int
    sha256: str
    ratings_file: str
    format: str
    num_ratings: int
    num_users: int
    num_items: int

    @property
    def folder(self) -> str:
        return self.name

    @property
    def archive_name(self) -> str:
        return f"{self.name}.zip"

    @property
    def ratings_path(self) -> str:
        """The ratings file relative to the folder that holds the extracted dataset, e.g. `ml-100k/u.data`."""
        return f"{self.folder}/{self.ratings_file}"


_BASE_URL = "https://files.grouplens.org/datasets/movielens"

MOVIELENS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "ml-100k", f"{_BASE_URL}/ml-100k.zip", 4924029,
            "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", "u.data", "tsv",
            100_000, 943, 1_682,
        ),
        DatasetInfo(
            "ml-1m", f"{_BASE_URL}/ml-1m.zip", 5917549,
            "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", "ratings.dat", "dat",
            1_000_209, 6_040, 3_706,
        ),
        DatasetInfo(
            "ml-latest-small", f"{_BASE_URL}/ml-latest-small.zip", 978202,
            "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436", "ratings.csv", "csv",
            100_836, 610, 9_724,
        ),
        DatasetInfo(
            "ml-20m", f"{_BASE_URL}/ml-20m.zip", 198702078,
            "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", "ratings.csv", "csv",
            20_000_263, 138_493, 26_744,
        ),
        DatasetInfo(
            "ml-25m", f"{_BASE_URL}/ml-25m.zip", 261978986,
            "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa", "ratings.csv", "csv",
            25_000_095, 162_541, 59_047,
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class _Format:
    separator: str  # between fields on a line
    reader_separator: str  # what pandas' C parser splits on; `::` becomes `:` plus empty fields
    description: str  # for error messages: "tab-separated"
    header: str | None


FORMATS = {
    "tsv": _Format("\t", "\t", "tab-separated", None),
    "dat": _Format("::", ":", "'::'-separated", None),
    "csv": _Format(",", ",", "comma-separated", "userId,movieId,rating,timestamp"),
}


@dataclasses.dataclass(eq=False)
class RatingsData:
    """Ratings as parallel arrays of user index, item index and rating.

    Indices run `0 .. num_users - 1` and `0 .. num_items - 1`; the vocab arrays
    map them back to the raw ids of the source. `user_counts` and
    `item_counts` count ratings per index over the whole dataset (a `subset`
    keeps them, so a strategy that needs frequencies sees the same ones for
    the train and validation parts).

    Attributes:
        name: `ml-100k` ... or `synthetic`.
        users: int32 user index per rating.
        items: int32 item index per rating.
        ratings: float32 rating.
        user_vocab: raw user id per index, in order of first appearance.
        item_vocab: raw item id per index, in order of first appearance.
        user_counts: int64 ratings per user index.
        item_counts: int64 ratings per item index.
        noise_sigma: for planted synthetic data, the noise standard deviation
            (its square is the best achievable MSE); None otherwise.

    Example:
        >>> data = load_movielens("ml-100k")
        >>> len(data), data.num_users, data.num_items
        (100000, 943, 1682)
    """

    name: str
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    user_vocab: np.ndarray
    item_vocab: np.ndarray
    user_counts: np.ndarray
    item_counts: np.ndarray
    noise_sigma: float | None = None

    def __post_init__(self) -> None:
        lengths = {len(self.users), len(self.items), len(self.ratings)}
        if len(lengths) != 1:
            raise ValueError(
                f"RatingsData: users, items and ratings must have one length; got "
                f"{len(self.users)}, {len(self.items)}, {len(self.ratings)}."
            )
        if len(self.user_counts) != len(self.user_vocab) or len(self.item_counts) != len(self.item_vocab):
            raise ValueError("RatingsData: counts and vocab must have one entry per index.")

    @property
    def num_users(self) -> int:
        return len(self.user_vocab)

    @property
    def num_items(self) -> int:
        return len(self.item_vocab)

    def __len__(self) -> int:
        return len(self.ratings)

    def __repr__(self) -> str:
        return (
            f"RatingsData(name={self.name!r}, ratings={len(self)}, users={self.num_users}, "
            f"items={self.num_items}, noise_sigma={self.noise_sigma})"
        )

    def subset(self, index: np.ndarray) -> RatingsData:
        """The selected ratings (integer positions or a boolean mask), with the same vocab and counts.

        Example:
            >>> train_index, val_index = random_split(len(data))
            >>> train, val = data.subset(train_index), data.subset(val_index)
        """
        index = np.asarray(index)
        if index.dtype != bool and not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"RatingsData.subset: invalid `index` dtype: {index.dtype}. Use integers or booleans.")
        return dataclasses.replace(
            self, users=self.users[index], items=self.items[index], ratings=self.ratings[index]
        )


def dataset_info(name: str) -> DatasetInfo:
    """The `DatasetInfo` for `name`; ValueError listing the valid names otherwise."""
    try:
        return MOVIELENS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown MovieLens dataset: {name!r}. Use one of: {', '.join(MOVIELENS)}.") from None


def default_cache_dir() -> Path:
    """`$MEMBED_CACHE_DIR` when set, else `~/.cache/membed`: where downloads are extracted.

    Example:
        >>> default_cache_dir()
        PosixPath('/home/me/.cache/membed')
    """
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "membed"


@dataclasses.dataclass(frozen=True)
class SourceHints:
    """How the caller names the ways to provide a dataset, so that messages speak the caller's terms.

    Library messages name Python arguments; a command line passes its own
    flags instead (`python -m membed` says `--data-dir` and "drop --no-download").

    Attributes:
        data_dir: the argument or flag that names a folder of extracted datasets.
        allow_download: how to let a dataset that is not found be downloaded.
    """

    data_dir: str
    allow_download: str


PYTHON_HINTS = SourceHints(data_dir="`data_dir`", allow_download="allow download (download=True)")
# The extracted datasets a folder of them holds (ml-100k/, ml-1m/ ...), as messages name them.
DATASET_GLOB = "ml-*"
# How many entries of such a folder a message lists before "and N more".
LISTED_ENTRIES = 5


def _search_path(
    data_dir: str | Path | None, cache_dir: str | Path | None, hints: SourceHints = PYTHON_HINTS
) -> list[tuple[str, Path]]:
    """The folders to look in, in order, each with a label for error messages; the cache is last."""
    places = []
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise ValueError(f"Invalid {hints.data_dir}: '{data_dir}' is not a folder.")
        places.append((hints.data_dir, data_dir))
    from_env = os.environ.get(DATA_DIR_ENV, "").strip()
    if from_env:
        places.append((f"${DATA_DIR_ENV}", Path(from_env).expanduser()))
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    places.append(("cache", cache))
    return places


def _find(info: DatasetInfo, places: list[tuple[str, Path]]) -> Path | None:
    """The first place's extracted folder of `info`; a place that is that folder itself also counts."""
    for label, place in places:
        if (place / info.ratings_path).is_file():
            return place / info.folder
        # Setting the variable to `.../ml-100k` instead of its parent is a common
        # slip; when the folder is named after the dataset, what was meant is clear.
        if place.name == info.folder and (place / info.ratings_file).is_file():
            logger.warning(
                "%s %s is the %s folder itself; using it, but set it to its parent, %s.",
                label, place, info.name, place.absolute().parent,
            )
            return place
    return None


def _place_problem(label: str, place: Path) -> str | None:
    """What is wrong with a folder the user named that does not hold the dataset; None when nothing stands out."""
    if not place.is_dir():
        return f"{label} {place} is not a folder"
    if place.name in MOVIELENS or any((place / known.ratings_file).is_file() for known in MOVIELENS.values()):
        return f"{label} {place} points at the dataset folder itself; set it to its parent, {place.absolute().parent}"
    if any(entry.is_dir() for entry in place.glob(DATASET_GLOB)):
        return None
    try:
        held = sorted(entry.name for entry in place.iterdir())
    except OSError as error:
        return f"{label} {place} cannot be read ({error.strerror})"
    more = len(held) - LISTED_ENTRIES
    listing = ", ".join(held[:LISTED_ENTRIES]) + (f" and {more} more" if more > 0 else "")
    return f"{label} {place} holds no {DATASET_GLOB} folder ({f'it holds {listing}' if held else 'it is empty'})"


def _unavailable(
    info: DatasetInfo, problem: str, places: list[tuple[str, Path]], last_remedy: str, hints: SourceHints
) -> DatasetUnavailable:
    """One line: `problem`, what is wrong with the folders the user named, and how to provide the dataset."""
    # The cache (last) is not the user's doing: it is empty until a first download.
    notes = [note for label, place in places[:-1] if (note := _place_problem(label, place))]
    remedies = f"set {DATA_DIR_ENV} to a folder holding {info.folder}/, pass {hints.data_dir}, or {last_remedy}"
    return DatasetUnavailable("; ".join([problem, *notes, remedies]) + ".", finding="; ".join([problem, *notes]))


def _checked(info: DatasetInfo, data: RatingsData) -> RatingsData:
    """`data` when its sizes are the dataset's known ones; DataError otherwise, as a cut file parses fine."""
    expected = (info.num_ratings, info.num_users, info.num_items)
    found = (len(data), data.num_users, data.num_items)
    if found != expected:
        raise DataError(
            f"{info.ratings_path}: expected {expected[0]} ratings ({expected[1]} users, {expected[2]} items), "
            f"found {found[0]} ratings ({found[1]} users, {found[2]} items); "
            f"the file is incomplete or not {info.name}."
        )
    return data


def find_movielens(
    name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> Path | None:
    """The extracted folder of dataset `name` (the one holding its ratings file), or None; never downloads.

    Looks in `data_dir`, then `$MEMBED_DATA_DIR`, then the cache, each a
    folder holding extracted datasets (`<dir>/ml-100k/u.data`). A folder that
    is the dataset folder itself (named `ml-100k`, holding `u.data`) is used
    too, with a warning.

    Args:
        name: a key of `MOVIELENS`.
        data_dir: a folder holding extracted datasets, searched first.
        cache_dir: the cache folder; default `default_cache_dir()`.

    Example:
        >>> find_movielens("ml-100k", data_dir="../shared/data/movielens")
        PosixPath('../shared/data/movielens/ml-100k')
    """
    return _find(dataset_info(name), _search_path(data_dir, cache_dir))


def load_movielens(
    name: str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    *,
    hints: SourceHints = PYTHON_HINTS,
) -> RatingsData:
    """Loads a MovieLens dataset as integer-indexed ratings, downloading it if needed.

    Files come from the first of `data_dir`, `$MEMBED_DATA_DIR` and the cache
    that holds the extracted folder with its ratings file; otherwise (when
    `download`) the official zip is fetched into the cache, checked against its
    recorded size and sha256, and extracted. Data loaded from the cache is also
    kept there as `<name>.npz`, so the next load skips parsing. Whatever the
    source, the numbers of ratings, users and items must be the dataset's
    recorded ones.

    Args:
        name: `ml-100k`, `ml-1m`, `ml-latest-small`, `ml-20m` or `ml-25m`.
        data_dir: a folder holding extracted datasets (`<data_dir>/ml-100k/u.data`).
        cache_dir: where downloads go; default `$MEMBED_CACHE_DIR` or `~/.cache/membed`.
        download: fetch the archive when no local copy is found.
        hints: how error messages name `data_dir` and allowing a download;
            a command line passes its flags.

    Raises:
        ValueError: unknown `name`, or `data_dir` is not a folder.
        DatasetUnavailable: not found locally and `download` is off or failed
            (also at once when it failed earlier in this process); the message
            says what is wrong with `data_dir` or `$MEMBED_DATA_DIR`.
        DataError: a malformed ratings file (naming file and line), one with
            other sizes than the dataset's, or a downloaded archive that does
            not match.

    Example:
        >>> data = load_movielens("ml-latest-small", data_dir="../shared/data/movielens")
        >>> len(data), data.num_users, data.num_items
        (100836, 610, 9724)
    """
    info = dataset_info(name)
    if not isinstance(download, bool):
        raise ValueError(f"Invalid `download`: {download!r}. It must be True or False.")
    places = _search_path(data_dir, cache_dir, hints)
    cache = places[-1][1]
    folder = _find(info, places)
    if folder is None:
        if not download:
            searched = ", ".join(f"{label} {place}" for label, place in places)
            problem = f"{name}: {info.ratings_path} not found in {searched}"
            raise _unavailable(info, problem, places, hints.allow_download, hints)
        try:
            folder = fetch_dataset(info, cache)
        except DatasetUnavailable as error:
            raise _unavailable(info, str(error), places, f"put {info.archive_name} in {cache}", hints) from error
    source = folder / info.ratings_file
    in_cache = folder == cache / info.folder
    if in_cache and (cached := _load_npz(cache / f"{name}.npz", source, name)) is not None:
        return _checked(info, cached)
    data = _checked(info, _index_ratings(name, *read_ratings(source, info.format, info.ratings_path)))
    if in_cache:
        _save_npz(cache / f"{name}.npz", source, data)
    return data


def read_ratings(path: str | Path, format: str, label: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parses a ratings file into raw user ids, raw item ids (int64) and ratings (float32).

    The whole file is parsed by pandas' C reader; only when that fails, or a
    check on the result does (field counts, rating range), is the file walked
    line by line to name the first malformed line.

    Args:
        path: the ratings file.
        format: `tsv`, `dat` or `csv` (see `DatasetInfo.format`).
        label: how messages name the file, e.g. `ml-100k/u.data`; default the path.

    Raises:
        DataError: "ml-100k/u.data line 17: expected 4 tab-separated fields, got 3".

    Example:
        >>> users, items, ratings = read_ratings("ml-100k/u.data", "tsv")
    """
    if format not in FORMATS:
        raise ValueError(f"Invalid `format`: {format!r}. Use one of: {', '.join(FORMATS)}.")
    layout = FORMATS[format]
    label = label or str(path)
    if layout.header is not None:
        with open(path, "rb") as stream:
            first = stream.readline().rstrip(b"\r\n").decode("utf-8", "replace")
        if first != layout.header:
            raise DataError(f"{label} line 1: expected header {layout.header!r}, got {first!r}.")
    # `::` is read as `:` with an empty field between each pair of values; the
    # empty columns are checked below so that a lone `:` is not taken for `::`.
    separators_per_line = 6 if format == "dat" else 3
    columns = ["user", "gap1", "item", "gap2", "rating", "gap3", "timestamp"] if format == "dat" else list(FIELD_NAMES)
    dtypes = {"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"}
    try:
        with warnings.catch_warnings():
            # The extra-field case it warns about is caught by the separator count below.
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                sep=layout.reader_separator,
                header=None,
                skiprows=1 if layout.header else 0,
                names=columns,
                index_col=False,
                dtype={name: dtypes.get(name, "float64") for name in columns},
                quoting=csv.QUOTE_NONE,
                engine="c",
            )
    except pd.errors.EmptyDataError:
        raise DataError(f"{label}: holds no ratings.") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OverflowError) as error:
        raise _malformed(path, layout, label, f"{type(error).__name__}: {error}") from None
    lines = len(frame) + (1 if layout.header else 0)
    # pandas fills missing trailing fields and, on the first line, drops extra
    # ones silently; counting separators catches both without a Python loop.
    if _count_byte(path, layout.reader_separator.encode()) != separators_per_line * lines:
        raise _malformed(path, layout, label, "separator count does not match the number of lines")
    if format == "dat" and not all(frame[gap].isna().all() for gap in ("gap1", "gap2", "gap3")):
        raise _malformed(path, layout, label, "single ':' between fields")
    ratings = frame["rating"].to_numpy(np.float32)
    low, high = RATING_RANGE
    if not len(frame):
        raise DataError(f"{label}: holds no ratings.")
    if not (np.isfinite(ratings).all() and ratings.min() >= low and ratings.max() <= high):
        raise _malformed(path, layout, label, "rating out of range")
    return frame["user"].to_numpy(np.int64), frame["item"].to_numpy(np.int64), ratings


def _count_byte(path: str | Path, byte: bytes) -> int:
    total = 0
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 24), b""):
            total += chunk.count(byte)
    return total


def _malformed(path: str | Path, layout: _Format, label: str, fallback: str) -> DataError:
    """A DataError naming the first malformed line; `fallback` says why when no single line is to blame."""
    message = _first_malformed_line(path, layout, label)
    return DataError(message or f"{label}: cannot be parsed ({fallback}).")


def _first_malformed_line(path: str | Path, layout: _Format, label: str) -> str | None:
    """Walks the file line by line (only on the error path) and describes the first bad line."""
    separator = layout.separator.encode()
    low, high = RATING_RANGE
    parsers = (int, int, float, int)
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if number == 1 and layout.header is not None:
                continue
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue  # pandas skips blank lines too
            fields = line.split(separator)
            where = f"{label} line {number}"
            if len(fields) != len(FIELD_NAMES):
                return f"{where}: expected {len(FIELD_NAMES)} {layout.description} fields, got {len(fields)}."
            for field, parse, text in zip(FIELD_NAMES, parsers, fields):
                try:
                    value = parse(text)
                except ValueError:
                    kind = "an integer" if parse is int else "a number"
                    return f"{where}: {field} is not {kind}: {text.decode('utf-8', 'replace')!r}."
                if field == "rating" and not (math.isfinite(value) and low <= value <= high):
                    return f"{where}: rating {value} is outside [{low}, {high}]."
    return None


def _index_ratings(name: str, raw_users: np.ndarray, raw_items: np.ndarray, ratings: np.ndarray) -> RatingsData:
    # factorize without sorting numbers ids by first appearance, as `unique()` does.
    user_codes, user_vocab = pd.factorize(raw_users, sort=False)
    item_codes, item_vocab = pd.factorize(raw_items, sort=False)
    return RatingsData(
        name=name,
        users=user_codes.astype(np.int32),
        items=item_codes.astype(np.int32),
        ratings=np.ascontiguousarray(ratings, dtype=np.float32),
        user_vocab=np.asarray(user_vocab, dtype=np.int64),
        item_vocab=np.asarray(item_vocab, dtype=np.int64),
        user_counts=np.bincount(user_codes, minlength=len(user_vocab)).astype(np.int64),
        item_counts=np.bincount(item_codes, minlength=len(item_vocab)).astype(np.int64),
    )


_NPZ_ARRAYS = ("users", "items", "ratings", "user_vocab", "item_vocab", "user_counts", "item_counts")


def _source_signature(source: Path) -> np.ndarray:
    stat = source.stat()
    return np.array([NPZ_VERSION, stat.st_size, stat.st_mtime_ns], dtype=np.int64)


def _load_npz(path: Path, source: Path, name: str) -> RatingsData | None:
    """The arrays cached from `source`, or None when there are none or they are stale or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if not np.array_equal(stored["signature"], _source_signature(source)):
                return None
            return RatingsData(name=name, **{key: stored[key] for key in _NPZ_ARRAYS})
    except (OSError, ValueError, KeyError) as error:
        logger.warning("Ignoring unreadable %s: %s", path, error)
        return None


def _save_npz(path: Path, source: Path, data: RatingsData) -> None:
    """Writes the arrays next to the extracted folder, atomically; a failure only costs the next parse."""
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(handle, "wb") as out:
            np.savez(out, signature=_source_signature(source), **{key: getattr(data, key) for key in _NPZ_ARRAYS})
        os.replace(temporary, path)
    except OSError as error:
        logger.warning("Could not cache %s: %s", path, error)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
