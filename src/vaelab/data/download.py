"""Checksummed downloads and verification of the local data files.

Where files come from, in order:
1. ``$VAELAB_MIRROR`` if set: a base URL (``https://…``, ``http://…`` or ``file:///…``) laid out like
   a data folder, i.e. ``<base>/<dataset>/<file name>``. Alternative local forms (``.amat.gz``) are
   also tried there, so a copy of a data folder works as a mirror.
2. The official URL, then the known byte-identical mirrors.
A download streams into ``<dest>.part-<random>`` in the destination folder and only becomes
``<dest>`` (atomically) once its size and sha256 match; on any failure the part file is removed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm import tqdm

from ..errors import VaelabError
from ..safefs import require_regular
from .registry import DatasetInfo, FileInfo, get_info, local_file, resolve_data_dir

_CHUNK = 1 << 20


def read_verified(path: Path, f: FileInfo, dataset: str) -> bytes:
    """The bytes of ``path`` after checking its size and sha256 against ``f``."""
    fix = f"delete it and run `vaelab data download {dataset}`"
    try:
        require_regular(path, "data file")
        size = path.stat().st_size
        if size != f.size:
            raise VaelabError(f"{path} has {size} bytes, expected {f.size} (incomplete or wrong file); {fix}")
        raw = path.read_bytes()
    except OSError as e:
        raise VaelabError(f"cannot read {path}: {e.strerror}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != f.sha256:
        raise VaelabError(f"{path} has sha256 {digest}, expected {f.sha256} (corrupt or wrong file); {fix}")
    return raw


class _Failed(Exception):
    """One URL did not give the expected file."""


def _fetch(url: str, out, sha256: str, size: int | None, progress: bool, timeout: float, desc: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "vaelab"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        announced = response.headers.get("Content-Length")
        announced = int(announced) if announced is not None else None
        if size is not None and announced is not None and announced != size:
            raise _Failed(f"server announces {announced} bytes, expected {size}")
        digest, received = hashlib.sha256(), 0
        show = progress and sys.stderr.isatty()
        with tqdm(
            total=size or announced,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=desc,
            file=sys.stderr,
            disable=not show,
            leave=False,
        ) as bar:
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                if size is not None and received > size:
                    raise _Failed(f"server sends more than the expected {size} bytes")
                digest.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
    # urllib returns a short body without complaint when the connection drops: check ourselves.
    if announced is not None and received != announced:
        raise _Failed(f"connection closed after {received} of {announced} bytes")
    if size is not None and received != size:
        raise _Failed(f"got {received} bytes, expected {size}")
    if digest.hexdigest() != sha256:
        raise _Failed(f"sha256 {digest.hexdigest()}, expected {sha256}")


def _describe(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def _try_urls(
    urls: Sequence[str], dest: Path, sha256: str, size: int | None, progress: bool, timeout: float
) -> list[str]:
    """Try each URL until one gives the file at ``dest``; return what went wrong with each tried."""
    failures = []
    for url in urls:
        part = dest.with_name(f"{dest.name}.part-{secrets.token_hex(4)}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            out = open(part, "xb")  # noqa: SIM115 - closed by the `with out:` below
        except OSError as e:
            raise VaelabError(
                f"cannot write to {dest.parent}: {e.strerror}; "
                "pass --data-dir or set VAELAB_DATA_DIR to a writable folder"
            ) from None
        try:
            with out:
                _fetch(url, out, sha256, size, progress, timeout, dest.name)
            os.replace(part, dest)
            return []
        except (_Failed, OSError, http.client.HTTPException, ValueError) as e:
            failures.append(f"{url}: {_describe(e)}")
        finally:
            part.unlink(missing_ok=True)  # already gone after a successful os.replace
    return failures


def download_file(
    urls: Sequence[str], dest: Path, sha256: str, size: int | None, *, progress: bool = True, timeout: float = 30
) -> Path:
    """Download ``dest`` from the first of ``urls`` that gives the file with this sha256 (and size).

    Progress goes to stderr when it is a terminal. Raises VaelabError listing what each URL did.
    """
    dest = Path(dest)
    if not urls:
        raise VaelabError(f"no URL to download {dest.name} from; set VAELAB_MIRROR or put the file at {dest}")
    failures = _try_urls(urls, dest, sha256, size, progress, timeout)
    if failures:
        raise VaelabError(f"could not download {dest.name}: {'; '.join(failures)}")
    return dest


def _sources(
    info: DatasetInfo, f: FileInfo, urls_override: Mapping[str, Sequence[str]] | None
) -> list[tuple[FileInfo, list[str]]]:
    """(form, URLs) pairs to try for ``f``, in order."""
    if urls_override is not None and any(v.name in urls_override for v in f.variants):
        return [(v, list(urls_override[v.name])) for v in f.variants if v.name in urls_override]
    mirror = os.environ.get("VAELAB_MIRROR", "").rstrip("/")
    tried_first = [(v, [f"{mirror}/{info.name}/{v.name}"]) for v in f.variants] if mirror else []
    return tried_first + [(f, list(f.urls))]


def fetch_file(
    info: DatasetInfo, f: FileInfo, root: Path, *, urls_override=None, progress: bool = True
) -> tuple[Path, FileInfo]:
    """Download ``f`` (in whichever form a source has) into ``root``; return its path and form."""
    failures = []
    for variant, urls in _sources(info, f, urls_override):
        if not urls:
            continue
        dest = root / info.name / variant.name
        tried = _try_urls(urls, dest, variant.sha256, variant.size, progress, timeout=30)
        if not tried:
            return dest, variant
        failures += tried
    raise VaelabError(
        f"could not download {info.name}/{f.name}: {'; '.join(failures) or 'no URL known'}; "
        f"check the network, set VAELAB_MIRROR to a mirror, or put the file at "
        f"{root / info.name / f.name} yourself"
    )


def download_dataset(
    name: str, data_dir=None, *, urls_override: Mapping[str, Sequence[str]] | None = None, progress: bool = True
) -> list[Path]:
    """Make sure every file of dataset ``name`` is present and verified, downloading the missing
    or bad ones; return the local paths.

    ``urls_override`` maps file names to URLs tried instead of ``$VAELAB_MIRROR`` and the
    registry's URLs (for tests and private mirrors).
    """
    info = get_info(name)
    root = resolve_data_dir(data_dir)
    paths = []
    for f in info.files:
        path, variant = local_file(root, info.name, f)
        try:
            read_verified(path, variant, info.name)
        except VaelabError:  # missing or bad: (re)download
            new_path, _ = fetch_file(info, f, root, urls_override=urls_override, progress=progress)
            if new_path != path:
                path.unlink(missing_ok=True)  # a bad copy in another form would shadow the new one
            path = new_path
        paths.append(path)
    return paths
