"""Parsers for the official file formats: IDX (MNIST), Larochelle's .amat, MATLAB 5 .mat.

Each takes the file's path (named in error messages) and optionally its bytes, when the caller
has already read them to verify the checksum. Files named ``*.gz`` are decompressed first.
Results may be read-only views of the file's bytes: copy before writing to them.
"""

from __future__ import annotations

import gzip
import io
import itertools
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import VaelabError
from ..safefs import read_bytes
from .registry import fix_hint


def _bad(path: Path, problem: str) -> VaelabError:
    return VaelabError(f"{path} {problem}; {fix_hint(path)}")


def _contents(path: Path, raw: bytes | None) -> bytes:
    if raw is None:
        raw = read_bytes(path, in_run=False)  # a regular file only: never blocks on a FIFO
    if not path.name.endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # bad header or CRC, truncated, corrupt stream
        raise _bad(path, f"is not a valid gzip file ({e})") from None


# --- IDX -------------------------------------------------------------------------------------

_IDX_NDIM = {2049: 1, 2051: 3}  # magic numbers of uint8 label (N,) and image (N, H, W) files


def read_idx(path: Path, raw: bytes | None = None) -> np.ndarray:
    """An IDX file (optionally gzipped) as a uint8 array: (N,) labels or (N, H, W) images."""
    path = Path(path)
    data = _contents(path, raw)
    magic = int.from_bytes(data[:4], "big")
    ndim = _IDX_NDIM.get(magic)
    if len(data) < 4 or ndim is None:
        raise _bad(path, f"is not an IDX file: magic number {magic}, expected 2049 (labels) or 2051 (images)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _bad(path, "is truncated inside its IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", count=ndim, offset=4))
    if len(data) - header != np.prod(dims):
        raise _bad(path, f"has {len(data) - header} data bytes but its IDX header says {dims}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


# --- Larochelle .amat --------------------------------------------------------------------------

_AMAT_LINE = 2 * 784  # 784 one-character values, each followed by ' ' (or '\n' at the end)


def read_amat(path: Path, raw: bytes | None = None) -> np.ndarray:
    """A binarized-MNIST .amat (or .amat.gz) text file as a uint8 (N, 784) array of 0s and 1s."""
    path = Path(path)
    data = np.frombuffer(_contents(path, raw), np.uint8)
    # Fast path for the official layout: view the text as a (N, 1568) byte grid.
    if data.size and data.size % _AMAT_LINE == 0:
        grid = data.reshape(-1, _AMAT_LINE)
        seps = grid[:, 1::2]
        values = grid[:, ::2] - ord("0")  # uint8 arithmetic: anything below '0' wraps to > 1
        if (seps[:, :-1] == ord(" ")).all() and (seps[:, -1] == ord("\n")).all() and (values <= 1).all():
            return values
    # Anything else (CRLF line ends, other whitespace): a slower but tolerant text parse.
    try:
        values = np.loadtxt(io.BytesIO(data.tobytes()), dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise _bad(path, f"is not a binarized MNIST .amat file ({e})") from None
    if values.shape[1:] != (784,) or not np.isin(values, (0, 1)).all():
        raise _bad(
            path, f"is not a binarized MNIST .amat file (expected rows of 784 zeros and ones, got shape {values.shape})"
        )
    return values.astype(np.uint8)


# --- MATLAB 5 .mat -------------------------------------------------------------------------------

_miINT8, _miUINT8, _miINT32, _miUINT32, _miMATRIX, _miCOMPRESSED = 1, 2, 5, 6, 14, 15
_mxUINT8_CLASS = 9
_COMPLEX_FLAG = 0x800


def _elements(path: Path, buf: memoryview, order: str):
    """Yield (type, payload) for each data element in ``buf``."""
    pos = 0
    while pos + 8 <= len(buf):
        dtype, nbytes = struct.unpack_from(order + "II", buf, pos)
        if dtype >> 16:  # "small data element": size in the upper half of the type word, data in the tag
            yield dtype & 0xFFFF, buf[pos + 4 : pos + 4 + (dtype >> 16)]
            pos += 8
            continue
        end = pos + 8 + nbytes
        if end > len(buf):
            raise _bad(path, "is truncated (a MAT-file data element runs past its end)")
        yield dtype, buf[pos + 8 : end]
        # Elements are padded to 8 bytes, except compressed ones.
        pos = end if dtype == _miCOMPRESSED else pos + 8 + -(-nbytes // 8) * 8


def _find_matrix(path: Path, buf: memoryview, order: str, name: str) -> np.ndarray | None:
    for dtype, payload in _elements(path, buf, order):
        if dtype == _miCOMPRESSED:
            try:
                found = _find_matrix(path, memoryview(zlib.decompress(payload)), order, name)
            except zlib.error as e:
                raise _bad(path, f"has a corrupt compressed variable ({e})") from None
            if found is not None:
                return found
        elif dtype == _miMATRIX:
            # Sub-elements: array flags, dimensions, name, real part.
            sub = list(itertools.islice(_elements(path, payload, order), 4))
            if len(sub) < 4:
                continue
            (_, flags), (_, dims), (_, var), (data_type, data) = sub
            if bytes(var).decode("latin-1") != name:
                continue
            flags = struct.unpack_from(order + "I", flags)[0]
            shape = tuple(int(d) for d in np.frombuffer(dims, order + "i4"))
            if flags & 0xFF != _mxUINT8_CLASS or flags & _COMPLEX_FLAG or data_type != _miUINT8:
                raise _bad(path, f"has variable {name!r} but not as a real uint8 matrix")
            if len(data) != np.prod(shape):
                raise _bad(path, f"has {len(data)} bytes for variable {name!r} of shape {shape}")
            return np.frombuffer(data, np.uint8).reshape(shape, order="F")  # MATLAB is column-major
    return None


def read_mat_uint8(path: Path, name: str, raw: bytes | None = None) -> np.ndarray:
    """The uint8 matrix variable ``name`` of a MATLAB 5 MAT-file, in MATLAB's shape (as scipy's loadmat).

    Enough of the format for the Frey Face file: uncompressed or zlib-compressed variables, either
    byte order; the variable must be stored as uint8.
    """
    path = Path(path)
    data = _contents(path, raw)
    order = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if len(data) < 128 or not data.startswith(b"MATLAB 5.0 MAT-file") or order is None:
        raise _bad(path, "is not a MATLAB 5 MAT-file")
    found = _find_matrix(path, memoryview(data)[128:], order, name)
    if found is None:
        raise _bad(path, f"has no variable {name!r}")
    return found
