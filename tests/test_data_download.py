"""vaelab.data downloads, against HTTP servers on 127.0.0.1 only (never the internet)."""

import functools
import hashlib
import http.server
import os
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from vaelab.data import DATASETS, dataset_status, download_dataset, download_file, load_split
from vaelab.errors import VaelabError


def shared_data_dir() -> Path:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # <repo>/../shared/data
    return Path(os.environ.get("VAELAB_TEST_DATA_DIR") or default).resolve()


@pytest.fixture
def shared() -> Path:
    root = shared_data_dir()
    needed = [root / "frey_face" / "frey_rawface.mat", root / "binarized_mnist" / "binarized_mnist_valid.amat.gz"]
    if not all(p.exists() for p in needed):
        pytest.fail(
            f"benchmark data missing under {root}; set VAELAB_TEST_DATA_DIR to the folder of the official files"
        )
    return root


@pytest.fixture(autouse=True)
def local_network_only(monkeypatch):
    """Fail the test on any URL that is not on 127.0.0.1, and keep proxies out of the way."""
    real_urlopen = urllib.request.urlopen

    def urlopen(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        assert urllib.parse.urlsplit(url).hostname == "127.0.0.1", f"test tried to reach {url}"
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("VAELAB_MIRROR", raising=False)


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; /drop/<file> announces the whole file, sends half, and hangs up."""

    def do_GET(self):
        if not self.path.startswith("/drop/"):
            return super().do_GET()
        body = Path(self.directory, self.path.removeprefix("/drop/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(folder) -> base URL of an HTTP server on 127.0.0.1 for that folder."""
    servers = []

    def start(root: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def blob(tmp_path):
    """A 300 kB file in a served folder: (folder, name, bytes, sha256)."""
    root = tmp_path / "served"
    root.mkdir()
    data = os.urandom(300_000)
    (root / "blob.bin").write_bytes(data)
    return root, "blob.bin", data, hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_success(serve, blob, tmp_path):
    root, name, data, sha = blob
    dest = tmp_path / "out" / name
    assert download_file([f"{serve(root)}/{name}"], dest, sha, len(data), progress=False) == dest
    assert dest.read_bytes() == data and leftovers(dest.parent) == [name]


def test_download_wrong_checksum_leaves_nothing(serve, blob, tmp_path):
    root, name, data, _ = blob
    dest = tmp_path / "out" / name
    with pytest.raises(VaelabError, match=rf"could not download {name}: .*sha256 .*, expected {'0' * 64}"):
        download_file([f"{serve(root)}/{name}"], dest, "0" * 64, len(data), progress=False)
    assert leftovers(dest.parent) == []


def test_download_dropped_connection_leaves_nothing(serve, blob, tmp_path):
    root, name, data, sha = blob
    dest = tmp_path / "out" / name
    with pytest.raises(VaelabError, match=r"/drop/blob\.bin: connection closed after 150000 of 300000 bytes"):
        download_file([f"{serve(root)}/drop/{name}"], dest, sha, len(data), progress=False)
    assert leftovers(dest.parent) == []


def test_download_wrong_size_is_refused(serve, blob, tmp_path):
    root, name, data, sha = blob
    with pytest.raises(VaelabError, match="server announces 300000 bytes, expected 1000"):
        download_file([f"{serve(root)}/{name}"], tmp_path / name, sha, 1000, progress=False)
    assert not (tmp_path / name).exists()


def test_download_falls_back_to_next_url(serve, blob, tmp_path):
    root, name, data, sha = blob
    base = serve(root)
    out = tmp_path / "out"
    dest = download_file([f"{base}/nowhere/{name}", f"{base}/{name}"], out / name, sha, len(data), progress=False)
    assert dest.read_bytes() == data
    with pytest.raises(VaelabError) as e:
        download_file([f"{base}/a/{name}", f"{base}/b/{name}"], out / "other.bin", sha, None, progress=False)
    assert f"{base}/a/{name}: HTTP 404" in str(e.value) and f"{base}/b/{name}: HTTP 404" in str(e.value)
    assert leftovers(out) == [name]


def test_download_dataset_from_mirror(serve, shared, tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_MIRROR", serve(shared) + "/")  # laid out like a data folder
    paths = download_dataset("frey_face", tmp_path, progress=False)
    assert paths == [tmp_path / "frey_face" / "frey_rawface.mat"]
    status = {d["name"]: d for d in dataset_status(tmp_path)}
    assert status["frey_face"]["ready"] and not status["mnist"]["files"][0]["present"]
    # A corrupt copy is replaced by a good one.
    paths[0].write_bytes(b"junk")
    download_dataset("frey_face", tmp_path, progress=False)
    assert paths[0].read_bytes() == (shared / "frey_face" / "frey_rawface.mat").read_bytes()


def test_load_split_downloads_alternative_form(serve, shared, tmp_path, monkeypatch):
    # The mirror has only the .amat.gz form (404 for the plain .amat): that form is fetched.
    monkeypatch.setenv("VAELAB_MIRROR", serve(shared))
    split = load_split("binarized_mnist", "valid", tmp_path)
    assert len(split) == 10000
    assert leftovers(tmp_path / "binarized_mnist") == ["binarized_mnist_valid.amat.gz"]


def test_download_dataset_url_override(serve, shared, tmp_path):
    base = serve(shared)
    name = "frey_rawface.mat"
    download_dataset(
        "frey_face",
        tmp_path,
        progress=False,
        urls_override={name: [f"{base}/missing/{name}", f"{base}/frey_face/{name}"]},
    )
    assert (tmp_path / "frey_face" / name).exists()
    with pytest.raises(VaelabError, match=r"could not download mnist/train-images-idx3-ubyte\.gz: .*HTTP 404"):
        download_dataset(
            "mnist",
            tmp_path / "x",
            progress=False,
            urls_override={f.name: [f"{base}/missing/{f.name}"] for f in DATASETS["mnist"].files},
        )
    assert leftovers(tmp_path / "x" / "mnist") == []
