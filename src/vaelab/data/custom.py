"""Your own images as a data set: ``folder:PATH`` or ``npy:PATH``.

- ``folder:PATH``: every ``.png``, ``.jpg`` and ``.jpeg`` file under PATH (sub-folders too;
  names starting with "." are skipped, other files ignored), in sorted order of their path
  relative to PATH. Grey files give one channel; if any file is colour, every file is read as
  RGB (grey ones repeated into three equal channels; palette files count as colour). Alpha is
  dropped; 16-bit grey is scaled by 65535, everything else by 255; a JPEG's EXIF orientation
  is applied. All files must have one size, unless ``image_size`` (HxW)
  is given: then each is resized to it (bilinear, antialiased).
- ``npy:PATH``: one NumPy array, N x H x W (grey) or N x C x H x W with C = 1 or 3 (channels
  first), either uint8 in 0..255 or float in [0, 1] (bool counts as 0/1). Read without pickle.
  ``image_size`` resizes it as above.

Either way the images become one float32 tensor (N, C, H, W) in [0, 1], read once per process
(later splits of the same unchanged source come from a cache, as slices of that one tensor),
with no labels.

Splits: a fixed permutation of the N images (``torch.randperm`` from a generator seeded with
SPLIT_SEED = 0, independent of the run's seed, so every run on the same data sees the same
split); the first ``n_train`` permuted images are train, the next ``n_valid`` valid, the last
``n_test`` test, with ``n_valid = n_test = max(1, N // 10)``: 80/10/10 for N >= 10.
``full_train`` makes train = train + valid. At least 3 images are needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import VaelabError
from ..memory import require_host
from ..safefs import require_regular

PREFIXES = ("folder:", "npy:")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_SEED = 0
_GREY_MODES = {"1", "L", "LA", "La", "F"}  # plus 16-bit grey ("I;16...", "I"), read separately

_cache: dict[tuple, tuple[torch.Tensor, bool]] = {}  # one entry: the last source read, permuted


def is_custom(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIXES)


def _kind_and_path(name: str) -> tuple[str, Path]:
    kind, _, path = name.partition(":")
    if not path.strip():
        raise VaelabError(
            f"--dataset {name!r} names no path; write {kind}:PATH, e.g. {kind}:"
            f"{'my_images' if kind == 'folder' else 'images.npy'}"
        )
    return kind, Path(path).expanduser()


def normalize_source(name: str) -> str:
    """``kind:PATH`` with PATH made absolute (against the current folder), so a saved run finds
    its data from anywhere."""
    kind, path = _kind_and_path(name)
    return f"{kind}:{path.absolute()}"


def run_name(name: str) -> str:
    """A short name for a default run folder: the data set's name, or the file/folder stem."""
    return _kind_and_path(name)[1].stem if is_custom(name) else name


def parse_image_size(value) -> tuple[int, int]:
    """'64x48' (H x W), '64' (square) or [64, 48] -> (64, 48)."""
    try:
        if isinstance(value, str):
            parts = value.lower().replace(" ", "").split("x")
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            raise ValueError
        if len(parts) == 1:
            parts = parts * 2
        h, w = (int(p) for p in parts)  # ValueError on '', 'a', 3 parts
        if isinstance(value, (list, tuple)) and any(isinstance(p, float) and not p.is_integer() for p in value):
            raise ValueError
    except (ValueError, TypeError):
        raise VaelabError(f"--image-size must be HEIGHTxWIDTH in pixels, e.g. 64x64 or 28x20; got {value!r}") from None
    if h < 1 or w < 1:
        raise VaelabError(f"--image-size needs positive sides, e.g. 64x64; got {value!r}")
    return h, w


# -- reading -----------------------------------------------------------------------------------


def _resize(x: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """(N, C, h, w) float -> (N, C, H, W), bilinear with antialiasing (a proper low-pass when
    shrinking), clamped to [0, 1]."""
    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


def _image_files(root: Path) -> list[Path]:
    if not root.exists():
        raise VaelabError(
            f"image folder {root} does not exist; give an existing folder of PNG/JPEG files (--dataset folder:PATH)"
        )
    if not root.is_dir():
        hint = "; for a NumPy array use --dataset npy:PATH" if root.suffix == ".npy" else ""
        raise VaelabError(
            f"{root} is a file, not a folder; --dataset folder:PATH needs a folder of PNG/JPEG files{hint}"
        )
    files: list[Path] = []
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if not f.startswith("."):
                (files if f.lower().endswith(IMAGE_SUFFIXES) else others).append(Path(dirpath) / f)
    for p in files:  # a FIFO would block the read for ever, a device feed it for ever
        if p.exists():  # (a dangling link is named by the read, as "cannot read image")
            require_regular(p, "image")
    if not files and not others:
        raise VaelabError(f"image folder {root} is empty; put PNG or JPEG files in it")
    if not files:
        example = others[0].relative_to(root)
        raise VaelabError(
            f"image folder {root} holds no PNG or JPEG files ({len(others)} other file(s), "
            f"e.g. {example}); add .png/.jpg/.jpeg images"
        )
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _read_image(path: Path):
    """(array (h, w) or (h, w, 3), scale, is_rgb) of one file; a VaelabError naming it if unreadable."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # decode now, so truncated or corrupt data fails here
            img = ImageOps.exif_transpose(img)  # type: ignore[assignment]  # camera JPEGs: as shown
            mode = img.mode
            if mode.startswith("I;16") or mode == "I":  # 16-bit grey PNG (Pillow opens some as "I")
                return np.asarray(img, dtype=np.float32), 65535.0, False
            if mode in _GREY_MODES:
                return np.asarray(img.convert("L")), 255.0, False
            return np.asarray(img.convert("RGB")), 255.0, True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise VaelabError(f"cannot read image {path}: {e}; remove or replace the file") from None


def read_folder(root: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Every image under root as float32 (N, C, H, W) in [0, 1]; see the module docstring."""
    files = _image_files(root)
    if size is not None:  # the resized tensor, checked before any image is read
        require_host(
            4 * len(files) * 3 * size[0] * size[1],
            f"{len(files)} images resized to {size[0]}x{size[1]}",
            "give a smaller --image-size",
        )
    arrays = [_read_image(p) for p in files]  # one by one at load time; the tensor is built once
    if size is None:
        first = arrays[0][0].shape[:2]
        for p, (a, _, _) in zip(files, arrays):
            if a.shape[:2] != first:
                (h0, w0), (h1, w1) = first, a.shape[:2]
                raise VaelabError(
                    f"images differ in size: {files[0].relative_to(root)} is {h0}x{w0} but "
                    f"{p.relative_to(root)} is {h1}x{w1} (HxW); pass --image-size HxW to resize all"
                )
    rgb = any(is_rgb for _, _, is_rgb in arrays)
    c = 3 if rgb else 1
    h, w = size if size is not None else arrays[0][0].shape[:2]
    out = torch.empty(len(files), c, h, w, dtype=torch.float32)
    for i, (a, scale, is_rgb) in enumerate(arrays):
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).div_(scale)
        t = t.permute(2, 0, 1) if is_rgb else t.expand(c, *t.shape)  # grey -> c equal channels
        out[i] = _resize(t.unsqueeze(0), size)[0]
    return out


def read_npy(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The array in path as float32 (N, C, H, W) in [0, 1]; see the module docstring."""
    if not path.exists():
        raise VaelabError(f"array file {path} does not exist; give a .npy file (--dataset npy:PATH)")
    if path.is_dir():
        raise VaelabError(f"{path} is a folder, not a .npy file; for a folder of images use --dataset folder:PATH")
    require_regular(path, "array file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic.startswith(b"PK\x03\x04"):
            raise VaelabError(f"{path} is a .npz archive; save the one image array with np.save to a .npy file")
        if magic != b"\x93NUMPY":
            raise VaelabError(f"{path} is not a valid .npy file (no NumPy header); write it with np.save")
        _check_npy_size(path)
        a = np.load(path, allow_pickle=False, mmap_mode="r")  # file-backed: only the float copy is new memory
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise VaelabError(
                f"{path} holds Python objects, not a numeric array; save it with "
                "np.save(path, array) from a uint8 or float array"
            ) from None
        raise VaelabError(f"{path} is not a valid .npy file ({e}); write it with np.save") from None
    except (OSError, EOFError) as e:
        raise VaelabError(f"cannot read {path} ({e}); write it with np.save") from None
    shape = "x".join(map(str, a.shape)) or "a scalar"
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[1] not in (1, 3):
        hint = " (it looks channels-last; save a.transpose(0, 3, 1, 2))" if a.shape[3] in (1, 3) else ""
        raise VaelabError(f"{path} holds an array of shape {shape}; channels must be 1 or 3 in N x C x H x W{hint}")
    elif a.ndim != 4:
        raise VaelabError(
            f"{path} holds an array of shape {shape}; expected N x H x W (grey) or N x C x H x W (C = 1 or 3)"
        )
    if 0 in a.shape:
        raise VaelabError(f"{path} holds an empty array (shape {shape}); it needs at least 3 images")
    if size is not None:
        n, c = a.shape[:2]
        require_host(
            4 * n * c * size[0] * size[1], f"{n} images resized to {size[0]}x{size[1]}", "give a smaller --image-size"
        )
    if a.dtype == np.uint8 or a.dtype == np.bool_:
        x = torch.from_numpy(a.astype(np.float32))
        if a.dtype == np.uint8:
            x.div_(255)
    elif np.issubdtype(a.dtype, np.floating):
        x = torch.from_numpy(a.astype(np.float32))
        lo, hi = x.min().item(), x.max().item()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise VaelabError(f"{path} holds NaN or infinite values; images must be finite floats in [0, 1]")
        if lo < 0 or hi > 1:
            raise VaelabError(
                f"{path} holds floats from {lo:g} to {hi:g}; images must be in [0, 1] "
                "(divide 0..255 data by 255, or save it as uint8)"
            )
    else:
        raise VaelabError(
            f"{path} holds {a.dtype} values; save uint8 (0..255) or float (0..1) images, e.g. a.astype(np.uint8)"
        )
    return _resize(x.contiguous(), size)


def _check_npy_size(path: Path) -> None:
    """Read the header alone and check that the data it announces is in the file and fits in
    memory as float32, before anything of that size is allocated."""
    from ..memory import human, require_host

    fmt = np.lib.format
    with open(path, "rb") as fh:
        major, _ = fmt.read_magic(fh)
        read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, _, dtype = read(fh)
        offset = fh.tell()
    if dtype.hasobject:
        raise ValueError("pickle: object arrays")  # the caller's message for Python objects
    count = int(np.prod(shape, dtype=object)) if shape else 1
    needed = offset + count * dtype.itemsize
    size = path.stat().st_size
    if size < needed:
        raise VaelabError(
            f"{path} is truncated or damaged: its header announces an array of shape "
            f"{'x'.join(map(str, shape))} ({human(needed)}) but the file holds {human(size)}; "
            "save it again with np.save"
        )
    require_host(
        count * 4,
        f"{path} as float32 images ({'x'.join(map(str, shape))})",
        "use fewer or smaller images (--image-size does not help: the array is read whole first)",
    )


def _signature(kind: str, path: Path) -> tuple:
    """What identifies the source's current contents cheaply: names, sizes and modification times."""
    if kind == "npy" or not path.is_dir():
        st = path.stat() if path.exists() else None
        return (st.st_size, st.st_mtime_ns) if st else ()
    out = []
    for p in _image_files(path):
        try:
            st = p.stat()
        except OSError as e:  # a dangling symbolic link, a link loop, a file removed meanwhile
            raise VaelabError(
                f"cannot read image {p}: {e.strerror}; remove the link or the file, or fix what it points to"
            ) from None
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(out)


def load_images(name: str, image_size=None) -> torch.Tensor:
    """All images of a ``folder:``/``npy:`` source in source order (files sorted by relative path,
    or the array's rows), float32 (N, C, H, W) in [0, 1]."""
    kind, path = _kind_and_path(name)
    if kind not in ("folder", "npy"):  # pragma: no cover - is_custom() admits only these
        raise AssertionError(kind)
    size = parse_image_size(image_size) if image_size is not None else None
    x = read_folder(path, size) if kind == "folder" else read_npy(path, size)
    if x.shape[0] < 3:
        raise VaelabError(
            f"{name} has {x.shape[0]} image(s); at least 3 are needed (one each for train, valid and test)"
        )
    return x


def _ranges(n: int, full_train: bool = False) -> dict[str, slice]:
    """Where each split lies in the permuted order (module docstring)."""
    n_hold = max(1, n // 10)
    n_train = n - 2 * n_hold
    return {
        "train": slice(0, n_train + (n_hold if full_train else 0)),
        "valid": slice(n_train, n_train + n_hold),
        "test": slice(n_train + n_hold, n),
    }


def split_permutation(n: int) -> torch.Tensor:
    """The fixed order in which n examples are dealt into splits: the same for every run (seeded
    with SPLIT_SEED, not the run's seed). Frey Face's frames are split by it too."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))


def split_indices(n: int, split: str, full_train: bool = False) -> torch.Tensor:
    """Rows (in source order) of `split` among n images: the fixed 80/10/10 permutation split."""
    return split_permutation(n)[_ranges(n, full_train)[split]]


def _permuted(name: str, image_size) -> tuple[torch.Tensor, bool]:
    """The images in split order (permuted once, so every split is a slice of one tensor) and
    whether they are all 0 or 1. Cached for the last source read, keyed on its path, the size
    asked for and its files' names, sizes and modification times: a training run's train and
    valid splits, and evaluate's, read the files once."""
    kind, path = _kind_and_path(name)
    size = parse_image_size(image_size) if image_size is not None else None
    key = (kind, str(path.absolute()), size, _signature(kind, path))
    if key not in _cache:
        _cache.clear()  # drop the previous source before reading the next one
        x = load_images(name, image_size)
        x = x[split_permutation(x.shape[0])]
        _cache[key] = (x, bool(((x == 0) | (x == 1)).all()))
    return _cache[key]


def load_custom_split(name: str, split: str, *, full_train: bool = False, image_size=None):
    """One split of a ``folder:``/``npy:`` source as a :class:`~vaelab.data.registry.Split`.
    Its images are a view of the cached tensor: treat them as read-only."""
    from .registry import SPLITS, DatasetInfo, Split

    if split not in SPLITS:
        raise VaelabError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    x, binary = _permuted(name, image_size)
    n = x.shape[0]
    ranges = _ranges(n)
    info = DatasetInfo(
        name,
        tuple(x.shape[1:]),
        has_labels=False,
        binary=binary,
        continuous=False,
        description=f"your images from {name.partition(':')[2]}",
        files=(),
        split_sizes=tuple(len(range(n)[ranges[s]]) for s in SPLITS),
    )
    return Split(name, split, x[_ranges(n, full_train)[split]], None, info)
