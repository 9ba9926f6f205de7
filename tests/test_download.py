"""Downloads against a loopback HTTP server: verified, atomic, and nothing left behind on failure."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from membed.data import (
    MOVIELENS,
    DataError,
    DatasetUnavailable,
    archive_url,
    clear_failed_downloads,
    download_archive,
    extract_archive,
    load_movielens,
)
from membed.data import download as download_module

U_DATA = b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t377\t1\t878887116\n"
RATINGS_DAT = b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
# (ratings, users, items) of the files above, recorded as the dataset's sizes when they are published.
U_DATA_SIZES = (3, 2, 3)
RATINGS_DAT_SIZES = (3, 2, 2)


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, body in entries.items():
            bundle.writestr(name, body)
    return buffer.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        body, declared_length = route
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body) if declared_length is None else declared_length))
        self.end_headers()
        self.wfile.write(body)
        # A short body with a longer Content-Length must end the connection, as a dropped transfer would.
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """A loopback server; `server.routes[path] = (body, declared_length or None)`."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.base = base
    monkeypatch.setenv("MEMBED_MOVIELENS_URL", base + "/mirror")
    real_urlopen = download_module.urllib.request.urlopen

    def loopback_only(url, *args, **kwargs):
        assert str(url).startswith(base + "/"), f"tests must not leave the loopback server: {url}"
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(download_module.urllib.request, "urlopen", loopback_only)
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("MEMBED_DATA_DIR", raising=False)
    monkeypatch.setenv("MEMBED_CACHE_DIR", str(tmp_path / "cache"))
    clear_failed_downloads()
    yield
    clear_failed_downloads()


def publish(
    server, monkeypatch, name: str, archive: bytes, *, declare: bytes | None = None, served=None, length=None,
    sizes: tuple[int, int, int] = U_DATA_SIZES,
):
    """Serves `served` (default `archive`) as `<name>.zip`; records `declare`'s (default `archive`) size and sha256.

    `sizes` (ratings, users, items) are recorded as the dataset's, as the loader checks them.
    """
    declare = archive if declare is None else declare
    info = dataclasses.replace(
        MOVIELENS[name], size=len(declare), sha256=hashlib.sha256(declare).hexdigest(),
        num_ratings=sizes[0], num_users=sizes[1], num_items=sizes[2],
    )
    monkeypatch.setitem(MOVIELENS, name, info)
    server.routes[f"/mirror/{name}.zip"] = (archive if served is None else served, length)
    return info


def cache_contents(tmp_path: Path) -> list[str]:
    cache = tmp_path / "cache"
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) if cache.exists() else []


def test_download_extracts_into_cache_and_is_reused(server, monkeypatch, tmp_path):
    publish(server, monkeypatch, "ml-100k", make_zip({"ml-100k/u.data": U_DATA, "ml-100k/README": b"x"}))
    data = load_movielens("ml-100k")
    assert server.requests == ["/mirror/ml-100k.zip"]
    assert data.user_vocab.tolist() == [196, 186] and data.item_vocab.tolist() == [242, 302, 377]
    assert data.ratings.tolist() == [3.0, 3.0, 1.0]
    # The zip is gone once extracted; no temporary file or folder remains.
    assert cache_contents(tmp_path) == ["ml-100k", "ml-100k.npz", "ml-100k/README", "ml-100k/u.data"]

    server.routes.clear()
    again = load_movielens("ml-100k")
    assert len(server.requests) == 1
    np.testing.assert_array_equal(again.users, data.users)


def test_ml_1m_downloads_in_dat_format(server, monkeypatch, tmp_path):
    publish(server, monkeypatch, "ml-1m", make_zip({"ml-1m/ratings.dat": RATINGS_DAT, "ml-1m/users.dat": b""}),
            sizes=RATINGS_DAT_SIZES)
    data = load_movielens("ml-1m", cache_dir=tmp_path / "cache")
    assert (len(data), data.num_users, data.num_items) == (3, 2, 2)
    assert data.item_vocab.tolist() == [1193, 661] and data.item_counts.tolist() == [2, 1]
    assert (tmp_path / "cache" / "ml-1m" / "ratings.dat").read_bytes() == RATINGS_DAT


def test_partial_local_folder_falls_through_to_download(server, monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    (shared / "ml-1m").mkdir(parents=True)
    (shared / "ml-1m" / "movies.dat").write_bytes(b"1::Toy Story (1995)::Animation\n")
    publish(server, monkeypatch, "ml-1m", make_zip({"ml-1m/ratings.dat": RATINGS_DAT}), sizes=RATINGS_DAT_SIZES)
    assert len(load_movielens("ml-1m", data_dir=shared)) == 3
    assert server.requests == ["/mirror/ml-1m.zip"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("checksum", "sha256 .* does not match"),
        ("short body", "expected .* bytes, got"),
        ("cut transfer", "transfer broke after"),
        ("too long", "more than the expected"),
        ("broken zip", "broken zip archive"),
        ("no ratings file", "has no ml-100k/u.data"),
    ],
)
def test_bad_download_raises_and_leaves_nothing(case, message, server, monkeypatch, tmp_path):
    archive = make_zip({"ml-100k/u.data": U_DATA * 200})
    if case == "checksum":
        publish(server, monkeypatch, "ml-100k", archive, declare=archive[:-1] + bytes([archive[-1] ^ 1]))
    elif case == "short body":
        publish(server, monkeypatch, "ml-100k", archive, served=archive[: len(archive) // 2])
    elif case == "cut transfer":
        publish(server, monkeypatch, "ml-100k", archive, served=archive[: len(archive) // 2], length=len(archive))
    elif case == "too long":
        publish(server, monkeypatch, "ml-100k", archive, served=archive + b"\0" * 100)
    elif case == "broken zip":
        broken = b"PK\x03\x04 this is not a zip archive" * 50
        publish(server, monkeypatch, "ml-100k", broken)
    else:
        publish(server, monkeypatch, "ml-100k", make_zip({"ml-100k/README": b"no ratings here"}))
    with pytest.raises(DataError, match=message):
        load_movielens("ml-100k")
    assert cache_contents(tmp_path) == []
    assert len(server.requests) == 1


def test_unreachable_archive_is_unavailable_and_leaves_nothing(server, tmp_path):
    with pytest.raises(DatasetUnavailable, match=r"ml-100k: cannot download .*/mirror/ml-100k\.zip.*MEMBED_DATA_DIR"):
        load_movielens("ml-100k")
    assert server.requests == ["/mirror/ml-100k.zip"]
    assert cache_contents(tmp_path) == []


def test_failed_download_says_what_is_wrong_with_membed_data_dir(server, monkeypatch, tmp_path):
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("MEMBED_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DatasetUnavailable) as error:
        load_movielens("ml-100k")
    assert (f"(Not Found); $MEMBED_DATA_DIR {tmp_path / 'data'} holds no ml-* folder (it is empty); "
            f"set MEMBED_DATA_DIR to a folder holding ml-100k/, pass `data_dir`, or put ml-100k.zip in "
            f"{tmp_path / 'cache'}.") in str(error.value)


@pytest.mark.parametrize("failure", ["unreachable", "wrong size"])
def test_failed_download_removes_the_cache_folders_it_created(failure, server, monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setenv("MEMBED_CACHE_DIR", str(home / ".cache" / "membed"))
    if failure == "wrong size":
        archive = make_zip({"ml-100k/u.data": U_DATA})
        publish(server, monkeypatch, "ml-100k", archive, declare=archive + b"\0")
    with pytest.raises(DatasetUnavailable if failure == "unreachable" else DataError):
        load_movielens("ml-100k")
    assert len(server.requests) == 1
    assert not home.exists()


def test_failed_download_keeps_a_cache_folder_that_was_there(server, tmp_path):
    (tmp_path / "cache").mkdir()
    with pytest.raises(DatasetUnavailable):
        load_movielens("ml-100k")
    assert (tmp_path / "cache").is_dir() and cache_contents(tmp_path) == []


def test_failed_download_is_tried_once_per_process_and_address(server, monkeypatch):
    with pytest.raises(DatasetUnavailable, match=r"cannot download .*/mirror/ml-100k\.zip \(Not Found\)") as first:
        load_movielens("ml-100k")
    # Not fetched again, and the same words: the cases one failure skips share one reason.
    with pytest.raises(DatasetUnavailable) as again:
        load_movielens("ml-100k")
    assert str(again.value) == str(first.value) and "put ml-100k.zip" in str(again.value)
    assert server.requests == ["/mirror/ml-100k.zip"]
    # Another address is another download.
    monkeypatch.setenv("MEMBED_MOVIELENS_URL", server.base + "/other")
    with pytest.raises(DatasetUnavailable, match=r"/other/ml-100k\.zip \(Not Found\)"):
        load_movielens("ml-100k")
    assert server.requests == ["/mirror/ml-100k.zip", "/other/ml-100k.zip"]
    # Forgotten, it is tried again; a download that succeeds is used as ever.
    monkeypatch.setenv("MEMBED_MOVIELENS_URL", server.base + "/mirror")
    publish(server, monkeypatch, "ml-100k", make_zip({"ml-100k/u.data": U_DATA}))
    clear_failed_downloads()
    assert len(load_movielens("ml-100k")) == 3 and len(load_movielens("ml-100k")) == 3
    assert server.requests == ["/mirror/ml-100k.zip", "/other/ml-100k.zip", "/mirror/ml-100k.zip"]


def test_download_that_does_not_verify_is_not_fetched_again(server, monkeypatch):
    archive = make_zip({"ml-100k/u.data": U_DATA})
    publish(server, monkeypatch, "ml-100k", archive, declare=archive + b"\0")
    with pytest.raises(DataError, match="expected .* bytes, got"):
        load_movielens("ml-100k")
    with pytest.raises(DatasetUnavailable, match=r"ml-100k\.zip from .*expected .* bytes, got"):
        load_movielens("ml-100k")
    assert len(server.requests) == 1


def test_download_false_never_requests(server, monkeypatch):
    publish(server, monkeypatch, "ml-100k", make_zip({"ml-100k/u.data": U_DATA}))
    with pytest.raises(DatasetUnavailable, match="allow download"):
        load_movielens("ml-100k", download=False)
    assert server.requests == []


def test_archive_already_in_cache_is_verified_and_used(server, monkeypatch, tmp_path):
    archive = make_zip({"ml-100k/u.data": U_DATA})
    publish(server, monkeypatch, "ml-100k", archive)
    server.routes.clear()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "ml-100k.zip").write_bytes(archive)
    assert len(load_movielens("ml-100k")) == 3
    assert server.requests == []
    assert not (tmp_path / "cache" / "ml-100k.zip").exists()


def test_wrong_archive_in_cache_is_replaced_by_a_download(server, monkeypatch, tmp_path):
    publish(server, monkeypatch, "ml-100k", make_zip({"ml-100k/u.data": U_DATA}))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "ml-100k.zip").write_bytes(b"stale")
    assert len(load_movielens("ml-100k")) == 3
    assert server.requests == ["/mirror/ml-100k.zip"]


def test_download_archive_with_explicit_url(server, monkeypatch, tmp_path):
    archive = make_zip({"ml-latest-small/ratings.csv": b"userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n"})
    info = publish(server, monkeypatch, "ml-latest-small", archive)
    server.routes["/elsewhere.zip"] = (archive, None)
    path = download_archive(info, tmp_path / "cache", url=f"{server.base}/elsewhere.zip")
    assert path == tmp_path / "cache" / "ml-latest-small.zip" and path.read_bytes() == archive
    assert server.requests == ["/elsewhere.zip"]
    folder = extract_archive(info, path, tmp_path / "cache")
    assert (folder / "ratings.csv").is_file()


def test_extraction_refuses_a_folder_in_the_way(server, monkeypatch, tmp_path):
    publish(server, monkeypatch, "ml-100k", make_zip({"ml-100k/u.data": U_DATA}))
    (tmp_path / "cache" / "ml-100k").mkdir(parents=True)
    (tmp_path / "cache" / "ml-100k" / "u.item").write_bytes(b"left over")
    with pytest.raises(DataError, match=r"cannot move the extracted folder .* remove .*ml-100k and retry"):
        load_movielens("ml-100k")
    assert [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")] == []


def test_archive_url_precedence(monkeypatch):
    info = MOVIELENS["ml-25m"]
    monkeypatch.delenv("MEMBED_MOVIELENS_URL", raising=False)
    assert archive_url(info) == "https://files.grouplens.org/datasets/movielens/ml-25m.zip"
    monkeypatch.setenv("MEMBED_MOVIELENS_URL", "http://mirror.example/movielens/")
    assert archive_url(info) == "http://mirror.example/movielens/ml-25m.zip"
    assert archive_url(info, url="http://other.example/a.zip") == "http://other.example/a.zip"


def test_recorded_archive_facts():
    # The values from the shared README, which the downloader checks against.
    assert {name: info.size for name, info in MOVIELENS.items()} == {
        "ml-100k": 4924029,
        "ml-1m": 5917549,
        "ml-latest-small": 978202,
        "ml-20m": 198702078,
        "ml-25m": 261978986,
    }
    assert MOVIELENS["ml-1m"].sha256 == "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
    assert all(len(info.sha256) == 64 and info.url.endswith(f"/{name}.zip") for name, info in MOVIELENS.items())
