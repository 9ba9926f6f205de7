"""Fetch a MovieLens archive into the cache, verified, and extract it atomically.

Nothing half-done is ever left under a name the loader looks at: the zip is
written to a temporary file in the cache folder and moved to its final name
with `os.replace` only after its size and sha256 match; it is extracted into a
temporary folder that is renamed into place only once the ratings file is
there. Any failure removes the temporary file, the temporary folder, (for
an archive that turns out to be broken) the zip itself, and a cache folder
that the call created and that is still empty. A download that failed is not
tried again in the same process (`clear_failed_downloads` forgets them).

The archive comes from the official GroupLens URL in `DatasetInfo.url`, or
from `$MEMBED_MOVIELENS_URL/<name>.zip` when that variable is set (a mirror,
or a loopback server in tests), or from an explicit `url`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

if TYPE_CHECKING:
    from membed.data.movielens import DatasetInfo

URL_ENV = "MEMBED_MOVIELENS_URL"
CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60.0

logger = logging.getLogger(__name__)

# (dataset name, URL) -> the message its download failed with. A network that does
# not answer would otherwise cost every later load in the process another full
# timeout. A later load raises the same message, word for word, so that every
# case one failure skips gives one reason (the gate groups missing cases by it).
_failed_downloads: dict[tuple[str, str], str] = {}


class DataError(ValueError):
    """Data that is there but wrong: a malformed line, a checksum or size mismatch, a broken zip."""


class DatasetUnavailable(RuntimeError):
    """A dataset that cannot be found locally and could not (or may not) be downloaded.

    Attributes:
        finding: what was wrong, without the advice on how to provide the
            dataset, for callers that give that advice in their own terms (the
            benchmark harness names its options); the message itself.
    """

    def __init__(self, message: str, finding: str | None = None):
        super().__init__(message)
        self.finding = finding if finding is not None else message


def archive_url(info: DatasetInfo, url: str | None = None) -> str:
    """The address of `info`'s zip: `url`, else `$MEMBED_MOVIELENS_URL/<name>.zip`, else the official one.

    Args:
        info: the dataset's description.
        url: an explicit address that wins over everything else.

    Example:
        >>> archive_url(MOVIELENS["ml-100k"])
        'https://files.grouplens.org/datasets/movielens/ml-100k.zip'
    """
    if url:
        return url
    mirror = os.environ.get(URL_ENV, "").strip()
    if mirror:
        return f"{mirror.rstrip('/')}/{info.archive_name}"
    return info.url


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file, read in chunks so that large archives need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_response(
    response: http.client.HTTPResponse, out: BinaryIO, info: DatasetInfo, source: str
) -> tuple[int, str]:
    """Streams the body into `out`; returns (bytes, sha256). Stops early on an oversized body."""
    digest = hashlib.sha256()
    received = 0
    try:
        while chunk := response.read(CHUNK_BYTES):
            received += len(chunk)
            # A wrong file far larger than expected (another dataset, say) must
            # not fill the disk before the size check would catch it.
            if received > info.size:
                raise DataError(
                    f"{info.archive_name} from {source}: more than the expected {info.size} bytes; "
                    "the archive or its recorded size is wrong."
                )
            digest.update(chunk)
            out.write(chunk)
    except (http.client.IncompleteRead, ConnectionError, TimeoutError) as error:
        raise DataError(
            f"{info.archive_name} from {source}: transfer broke after {received} of {info.size} bytes "
            f"({type(error).__name__})."
        ) from error
    # http.client reports a connection closed before Content-Length as a plain end of data.
    announced = response.headers.get("Content-Length") if hasattr(response, "headers") else None
    if announced is not None and announced.isdigit() and received < int(announced):
        raise DataError(
            f"{info.archive_name} from {source}: transfer broke after {received} of {announced} announced bytes."
        )
    return received, digest.hexdigest()


def _check_archive(size: int, sha256: str, info: DatasetInfo, source: str) -> None:
    if size != info.size:
        raise DataError(f"{info.archive_name} from {source}: expected {info.size} bytes, got {size}.")
    if sha256 != info.sha256:
        raise DataError(
            f"{info.archive_name} from {source}: sha256 {sha256} does not match the expected {info.sha256}."
        )


def clear_failed_downloads() -> None:
    """Forgets the downloads that failed in this process, so that the next load tries them again.

    Example:
        >>> clear_failed_downloads()  # e.g. between tests, or once the network is back
    """
    _failed_downloads.clear()


@contextlib.contextmanager
def _created_folder(folder: Path) -> Iterator[None]:
    """Creates `folder` and its missing parents; on failure removes those of them that are still empty.

    A failed first download must not leave an empty `~/.cache/membed` behind,
    but a folder that was there before, or that now holds something, stays.
    """
    created = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for path in created:
            try:
                path.rmdir()
            except OSError:
                break  # not empty (or not ours to remove): nor are its parents
        raise


def download_archive(info: DatasetInfo, cache_dir: str | Path, url: str | None = None) -> Path:
    """Downloads `info`'s zip into `cache_dir`, checks size and sha256, and returns its path.

    The body goes to a temporary file in `cache_dir` that replaces
    `cache_dir/<name>.zip` only once it has been verified, so an interrupted or
    wrong download leaves nothing behind. A download that failed is not tried
    again in the same process (see `clear_failed_downloads`).

    Args:
        info: the dataset's description (URL, size, sha256).
        cache_dir: the folder to write into; created if missing (and removed
            again, if still empty, when the download fails).
        url: fetch from here instead of the official or mirror address.

    Raises:
        DatasetUnavailable: the server could not be reached or refused the
            request, or this download already failed earlier in the process.
        DataError: the body was cut short, or its size or sha256 is wrong.

    Example:
        >>> download_archive(MOVIELENS["ml-1m"], default_cache_dir())
        PosixPath('/home/me/.cache/membed/ml-1m.zip')
    """
    cache_dir = Path(cache_dir)
    source = archive_url(info, url)
    key = (info.name, source)
    if key in _failed_downloads:
        logger.info("Not downloading %s again: it failed earlier in this process", source)
        raise DatasetUnavailable(_failed_downloads[key])
    target = cache_dir / info.archive_name
    with _created_folder(cache_dir):
        logger.info("Downloading %s (%d bytes) from %s", info.archive_name, info.size, source)
        handle, temporary = tempfile.mkstemp(dir=cache_dir, prefix=f".{info.archive_name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                try:
                    response = urllib.request.urlopen(source, timeout=TIMEOUT_SECONDS)
                except (urllib.error.URLError, OSError, ValueError) as error:
                    reason = getattr(error, "reason", error)
                    _failed_downloads[key] = f"{info.name}: cannot download {source} ({reason})"
                    raise DatasetUnavailable(_failed_downloads[key]) from error
                with response:
                    size, sha256 = _copy_response(response, out, info, source)
            _check_archive(size, sha256, info, source)
            os.replace(temporary, target)
        except DataError as error:
            _failed_downloads[key] = str(error)
            raise
        finally:
            Path(temporary).unlink(missing_ok=True)
    return target


def extract_archive(info: DatasetInfo, archive: str | Path, cache_dir: str | Path) -> Path:
    """Extracts `info.folder` from a verified zip into `cache_dir`; returns the extracted folder.

    The zip is unpacked into a temporary folder inside `cache_dir` and the
    dataset folder renamed into place, so a reader sees either no folder or a
    complete one. A broken archive is deleted, together with everything
    extracted so far.

    Args:
        info: the dataset's description (folder and ratings file names).
        archive: the zip, already checked against `info`.
        cache_dir: where the extracted folder goes.

    Raises:
        DataError: the zip is broken or lacks the ratings file, or a folder
            without the ratings file is in the way.

    Example:
        >>> extract_archive(MOVIELENS["ml-1m"], cache / "ml-1m.zip", cache)
        PosixPath('/home/me/.cache/membed/ml-1m')
    """
    archive, cache_dir = Path(archive), Path(cache_dir)
    final = cache_dir / info.folder
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{info.folder}.extract."))
    try:
        try:
            with zipfile.ZipFile(archive) as bundle:
                if info.ratings_path not in bundle.namelist():
                    raise DataError(f"{archive.name}: has no {info.ratings_path}.")
                # zipfile drops absolute paths and '..' parts, so nothing lands outside staging.
                bundle.extractall(staging)
        except (zipfile.BadZipFile, zlib.error, EOFError, DataError) as error:
            archive.unlink(missing_ok=True)
            if isinstance(error, DataError):
                raise
            raise DataError(f"{archive.name}: broken zip archive ({error}); it was removed.") from error
        try:
            os.rename(staging / info.folder, final)
        except OSError as error:
            # Another process may have finished the same extraction first.
            if not (final / info.ratings_file).is_file():
                raise DataError(
                    f"{info.name}: cannot move the extracted folder to {final} ({error.strerror}); "
                    f"remove {final} and retry."
                ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def fetch_dataset(info: DatasetInfo, cache_dir: str | Path, url: str | None = None) -> Path:
    """Makes `cache_dir/<folder>` hold the extracted dataset; returns that folder.

    Reuses a zip already in `cache_dir` when it matches the recorded size and
    sha256 (so an archive fetched by hand can be dropped there), otherwise
    downloads it. The zip is deleted once extracted.

    Args:
        info: the dataset's description.
        cache_dir: the cache folder; created if missing (and removed again,
            if still empty, when fetching fails).
        url: fetch from here instead of the official or mirror address.

    Example:
        >>> fetch_dataset(MOVIELENS["ml-1m"], default_cache_dir())
        PosixPath('/home/me/.cache/membed/ml-1m')
    """
    cache_dir = Path(cache_dir)
    archive = cache_dir / info.archive_name
    with _created_folder(cache_dir):
        if archive.is_file():
            try:
                size = archive.stat().st_size
                # Hashing a wrong-sized file is wasted time: the size check fails first anyway.
                _check_archive(size, file_sha256(archive) if size == info.size else "", info, str(archive))
            except DataError as error:
                logger.warning("Ignoring %s: %s", archive, error)
                archive.unlink(missing_ok=True)
        if not archive.is_file():
            archive = download_archive(info, cache_dir, url)
        folder = extract_archive(info, archive, cache_dir)
    archive.unlink(missing_ok=True)
    return folder
