"""The benchmark data sets: registry, checksummed downloads, parsers and splits.

Files live in ``<data dir>/<dataset>/<official file name>``; the data dir is the argument, else
``$VAELAB_DATA_DIR``, else ``~/.cache/vaelab``. ``$VAELAB_MIRROR`` (a base URL laid out the same
way) is tried before the official URLs; see :mod:`vaelab.data.download`.
"""

from .datasets import BINARIZE_MODES, DataSource, OfficialDataset, binarize, dataset_status, format_status, load_split
from .download import download_dataset, download_file
from .formats import read_amat, read_idx, read_mat_uint8
from .registry import DATASETS, SPLITS, DatasetInfo, FileInfo, Split, resolve_data_dir

__all__ = [
    "BINARIZE_MODES",
    "DATASETS",
    "SPLITS",
    "DataSource",
    "DatasetInfo",
    "FileInfo",
    "OfficialDataset",
    "Split",
    "binarize",
    "dataset_status",
    "download_dataset",
    "download_file",
    "format_status",
    "load_split",
    "read_amat",
    "read_idx",
    "read_mat_uint8",
    "resolve_data_dir",
]
