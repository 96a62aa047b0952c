"""The datasets: read from the data directory, downloaded only where allowed, or generated.

Layout under the data directory (torchvision's, so an existing download can be reused):

    MNIST/raw/{train-images-idx3-ubyte, train-labels-idx1-ubyte,
               t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte}[.gz]    mnist
    FashionMNIST/raw/<the same four names>[.gz]                         fashion_mnist
    cifar-10-batches-py/{data_batch_1 … data_batch_5, test_batch}       cifar10 (python pickles)

`synthetic` is generated in memory and needs no directory. A dataset a plugin registers is
loaded by its plugin and checked against its description (`plugin_data`); its inputs are uint8
pixels like the built-ins', or real-valued features (float32), which `standardize` scales
with float statistics and `raw` keeps.

Every dataset is first a set of uint8 images (N, C, H, W) with int64 labels; the
first `train_size` / `test_size` examples of each split are kept, and the
inputs are scaled (`input_scaling`):

    raw:          x                        (0 … 255, as Lam & Lee fed them)
    unit:         x / 255
    standardize:  (x − μ_c) / σ_c          μ_c, σ_c: mean and (population) standard
                                            deviation of channel c over the training
                                            split kept, applied to both splits

Files are parsed with numpy (IDX) or a restricted unpickler (CIFAR batches: only
the numpy array reconstruction a batch needs is allowed), and the parsed arrays
are cached in-process, keyed by path, mtime and size. Which files a dataset is, and
their digests, is `idlab.dataset_files.CATALOG`; a missing dataset is downloaded from
its mirrors and verified (`idlab.dataset_download`) when `download=True`.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import math
import os
import pickle
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from idlab.config import DATASETS, RunConfig
from idlab.dataset_download import DEFAULT_MIRRORS, DownloadError, ProgressCallback, download_dataset
from idlab.dataset_files import CATALOG, DatasetCorrupt, DatasetMissing
from worker.subspace.plugin_data import read_plugin_dataset

try:  # numpy ≥ 2
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _np_numeric

HOW_TO_DOWNLOAD = "or let the lab download it: IDLAB_ALLOW_DOWNLOAD=1 (the default), or `idlab data fetch {name}`"

IDX_FOLDERS = {name: CATALOG[name].folder for name in ("mnist", "fashion_mnist")}
IDX_FILES = dict(zip(("train_images", "train_labels", "test_images", "test_labels"),  # role → file name (without .gz)
                     CATALOG["mnist"].file_names, strict=True))
CIFAR_FOLDER = CATALOG["cifar10"].folder
CIFAR_TRAIN_BATCHES = tuple(CATALOG["cifar10"].file_names[:-1])
CIFAR_TEST_BATCH = CATALOG["cifar10"].file_names[-1]
CIFAR_ARCHIVE = CATALOG["cifar10"].archive.name


#: uint8 train images (N, C, H, W), train labels, test images, test labels: a dataset before scaling.
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Splits:
    """Inputs x: float32 (N, C, H, W), scaled; labels y: int64 (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


__all__ = ["DatasetCorrupt", "DatasetMissing", "DownloadError", "Splits", "load_dataset"]


# ---- the entry point ------------------------------------------------------------------


def load_dataset(config: RunConfig, data_dir: str | os.PathLike | None, download: bool = False,
                 on_progress: ProgressCallback | None = None, mirrors: Sequence[str] | None = None) -> Splits:
    """The splits of `config.dataset`, cut to `train_size` / `test_size` and scaled by `input_scaling`.

    `data_dir` is the folder of the datasets (the lab passes its settings' data_dir: the engine reads
    no settings and no environment); only `synthetic`, generated, needs none. A missing dataset is
    downloaded when `download` is true (from `mirrors`, setting entries; None: the default
    mirrors, as the engine reads no settings — the lab passes its IDLAB_DATASET_MIRRORS),
    reporting `on_progress(bytes done, total bytes or None)` while it does, and raises `DatasetMissing`
    otherwise; `DownloadError` when no mirror served it.
    """
    name = config.dataset
    if name == "synthetic":
        arrays = synthetic_arrays()
    elif name not in DATASETS:
        arrays = read_plugin_dataset(name, None if data_dir is None else Path(data_dir).expanduser())
    else:
        root = resolve_data_dir(data_dir)
        if download and CATALOG[name].missing(root):
            if mirrors is None:
                mirrors = DEFAULT_MIRRORS
            download_dataset(name, root, mirrors, on_progress)
        if name in IDX_FOLDERS:
            arrays = read_idx_dataset(name, root)
        elif name == "cifar10":
            arrays = read_cifar10(root)
        else:
            raise ValueError(f"unknown dataset {name!r}")
    train_images, train_labels, test_images, test_labels = arrays
    train_images, train_labels = train_images[: config.train_size], train_labels[: config.train_size]
    test_images, test_labels = test_images[: config.test_size], test_labels[: config.test_size]
    train_x, test_x = scale_inputs(train_images, test_images, config.input_scaling)
    return Splits(train_x, torch.from_numpy(train_labels.astype(np.int64)),
                  test_x, torch.from_numpy(test_labels.astype(np.int64)))


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """`data_dir` as a path; a real dataset needs one (the lab's setting IDLAB_DATA_DIR, passed in)."""
    if data_dir is None:
        raise ValueError("no data directory given: pass the lab's data_dir (Settings().data_dir, from "
                         "IDLAB_DATA_DIR) to read a dataset other than 'synthetic'")
    return Path(data_dir).expanduser()


# ---- scaling --------------------------------------------------------------------------


def scale_inputs(train: np.ndarray, test: np.ndarray, scaling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, C, H, W) images (or float32 features) → float32 tensors scaled `raw`, `unit` or `standardize`."""
    train_x = torch.from_numpy(train.astype(np.float32))
    test_x = torch.from_numpy(test.astype(np.float32))
    pixels = train.dtype == np.uint8
    if scaling == "raw":
        return train_x, test_x
    if scaling == "unit":
        if not pixels:
            raise ValueError("input_scaling 'unit' divides pixel values by 255; these inputs are real-valued")
        return train_x.div_(255.0), test_x.div_(255.0)
    if scaling == "standardize":
        mean, std = channel_statistics(train) if pixels else feature_statistics(train)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        return train_x.sub_(mean_t).div_(std_t), test_x.sub_(mean_t).div_(std_t)
    raise ValueError(f"unknown input_scaling {scaling!r}")


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean μ_c and population std σ_c of uint8 images (N, C, H, W).

    Exact, from each channel's histogram h_c(v) of the 256 values:
    μ_c = Σ_v v·h_c(v) / n,  σ_c² = Σ_v (v − μ_c)²·h_c(v) / n. A constant channel gets σ_c = 1.
    """
    values = np.arange(256, dtype=np.float64)
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = np.zeros(256, dtype=np.float64)
        for start in range(0, len(images), 4096):  # chunks: bincount widens its input to int64
            counts += np.bincount(images[start:start + 4096, c].ravel(), minlength=256)
        n = counts.sum()
        mean = (values * counts).sum() / n
        std = math.sqrt(((values - mean) ** 2 * counts).sum() / n)
        means.append(mean)
        stds.append(std if std > 0 else 1.0)
    return np.array(means), np.array(stds)


def feature_statistics(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean μ_c and population std σ_c of real-valued inputs (N, C, H, W), in float64.

    A constant channel gets σ_c = 1.
    """
    wide = values.astype(np.float64)
    means = wide.mean(axis=(0, 2, 3))
    stds = wide.std(axis=(0, 2, 3))
    return means, np.where(stds > 0, stds, 1.0)


# ---- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------


def read_idx_dataset(name: str, root: Path) -> Arrays:
    """The four IDX files of `name` under root/<folder>/, each raw or .gz (raw preferred)."""
    folder = root / IDX_FOLDERS[name]
    paths, missing = {}, []
    for role, file_name in IDX_FILES.items():
        candidates = [folder / file_name, folder / f"{file_name}.gz"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            missing.append(file_name)
        paths[role] = found
    if missing:
        expected = ", ".join(f"{f}[.gz]" for f in IDX_FILES.values())
        raise DatasetMissing(
            f"dataset {name!r} not found: put the IDX files {expected} (raw or gzip-compressed) in "
            f"{folder.resolve()} — missing: {', '.join(missing)} — {HOW_TO_DOWNLOAD.format(name=name)}",
            folder, list(IDX_FILES.values()))
    spec = DATASETS[name]
    splits = []
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"])
        labels = read_idx(paths[f"{split}_labels"])
        image_path, label_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (spec.height, spec.width):
            raise DatasetCorrupt(f"{image_path}: expected images of shape (N, {spec.height}, {spec.width}), "
                                 f"found {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DatasetCorrupt(f"{label_path}: expected {len(images)} labels (one per image in "
                                 f"{image_path.name}), found shape {labels.shape}")
        if labels.size and labels.max() >= spec.classes:
            raise DatasetCorrupt(f"{label_path}: label {labels.max()} out of range 0…{spec.classes - 1}")
        splits += [images[:, None], labels]
    return tuple(splits)  # type: ignore[return-value]


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file (raw or .gz); cached by (path, mtime, size), read-only."""
    stat = os.stat(path)
    return _read_idx_cached(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                data = stream.read()
        else:
            data = Path(path).read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetCorrupt(f"{path}: cannot read ({error}); delete it and put a good copy there") from error
    return parse_idx(data, path)


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode an IDX file of unsigned bytes.

    Layout: magic = 0x00 0x00 <type> <ndim> (type 0x08 = unsigned byte), then ndim
    big-endian uint32 dimensions, then prod(dims) bytes in row-major order.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetCorrupt(f"{source}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    type_code, ndim = data[2], data[3]
    if type_code != 0x08:
        raise DatasetCorrupt(f"{source}: IDX element type 0x{type_code:02x}, expected 0x08 (unsigned byte)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DatasetCorrupt(f"{source}: truncated IDX header ({ndim} dimensions, {len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(dims):
        raise DatasetCorrupt(f"{source}: {len(data) - header} bytes of data for dimensions {dims}, "
                             f"expected {math.prod(dims)} (truncated or corrupt file)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)  # read-only view


# ---- CIFAR-10 (python pickle batches) -------------------------------------------------


def read_cifar10(root: Path) -> Arrays:
    """The five training batches and the test batch under root/cifar-10-batches-py/."""
    folder = root / CIFAR_FOLDER
    names = [*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetMissing(
            f"dataset 'cifar10' not found: put the python batches {', '.join(names)} in {folder.resolve()} "
            f"(extract {CIFAR_ARCHIVE} from https://www.cs.toronto.edu/~kriz/cifar.html into "
            f"{root.resolve()}) — missing: {', '.join(missing)} — {HOW_TO_DOWNLOAD.format(name='cifar10')}",
            folder, names)
    train = [read_cifar_batch(folder / n) for n in CIFAR_TRAIN_BATCHES]
    test_images, test_labels = read_cifar_batch(folder / CIFAR_TEST_BATCH)
    return (np.concatenate([images for images, _ in train]), np.concatenate([labels for _, labels in train]),
            test_images, test_labels)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of one batch; cached by (path, mtime, size)."""
    stat = os.stat(path)
    return _read_cifar_batch_cached(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


class CifarBatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch — a dict of bytes, lists of ints and one uint8 numpy array — and nothing else.

    Only the callables that rebuild a numpy array are resolvable (`_codecs.encode`
    for bytes pickled by Python 3 at protocol 2); any other global (os.system,
    builtins.eval, …) is refused before it can be called.
    """

    ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _np_numeric._frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _np_numeric._frombuffer,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: a CIFAR batch holds only "
                                         "numpy arrays, lists and bytes") from None


@functools.lru_cache(maxsize=16)
def _read_cifar_batch_cached(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as stream:
            batch = CifarBatchUnpickler(stream, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DatasetCorrupt(f"{path}: not a CIFAR-10 python batch ({error})") from error
    if not isinstance(batch, dict):
        raise DatasetCorrupt(f"{path}: not a CIFAR-10 python batch (a {type(batch).__name__}, not a dict)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        raise DatasetCorrupt(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise DatasetCorrupt(f"{path}: 'labels' must be a list of integers") from error
    if labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DatasetCorrupt(f"{path}: expected {len(data)} labels in 0…9, found shape {labels.shape}")
    images = data.reshape(-1, 3, 32, 32)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


# ---- synthetic ------------------------------------------------------------------------

SYNTHETIC_SEED = 20180424  # fixed: the data never depend on the run's seed
SYNTHETIC_SHARED = 0.5     # weight of the component all class prototypes share
SYNTHETIC_NOISE = 0.7      # std of the per-example smooth noise, relative to a prototype's
SYNTHETIC_MAX_SHIFT = 2    # pixels, in each direction


def smooth_fields(rng: np.random.Generator, n: int, size: int, sigma: float) -> np.ndarray:
    """n random smooth periodic images: G·Z·Gᵀ / std, Z white noise, G the circular Gaussian blur (σ pixels)."""
    distance = np.abs(np.arange(size)[:, None] - np.arange(size)[None, :])
    distance = np.minimum(distance, size - distance)
    blur = np.exp(-0.5 * (distance / sigma) ** 2).astype(np.float32)
    blur /= blur.sum(axis=1, keepdims=True)
    fields = blur @ rng.standard_normal((n, size, size), dtype=np.float32) @ blur.T
    return fields / fields.std(axis=(1, 2), keepdims=True)


@functools.lru_cache(maxsize=1)
def synthetic_arrays() -> Arrays:
    """The synthetic dataset: MNIST-shaped uint8 images of 10 classes, balanced, deterministic.

    Class c has a smooth prototype p_c = s·q + (1 − s)·r_c (q shared by all classes,
    r_c its own; s = SYNTHETIC_SHARED). An example of class c is

        x = clip(128 + 40·(a · shift(p_c) + ν·e), 0, 255)

    with a ~ U(0.7, 1.3) a contrast, shift a circular translation by up to
    SYNTHETIC_MAX_SHIFT pixels each way, and e a finer smooth noise image (ν =
    SYNTHETIC_NOISE). Direct training of the default fc net reaches roughly 98–99 %
    test accuracy; subspace training needs a d in the hundreds to get close.
    """
    spec = DATASETS["synthetic"]
    size, classes = spec.height, spec.classes
    n = spec.train_size + spec.test_size
    rng = np.random.default_rng(SYNTHETIC_SEED)
    shared = smooth_fields(rng, 1, size, sigma=3.0)
    prototypes = SYNTHETIC_SHARED * shared + (1 - SYNTHETIC_SHARED) * smooth_fields(rng, classes, size, sigma=3.0)
    labels = np.concatenate([rng.permutation(np.arange(spec.train_size) % classes),
                             rng.permutation(np.arange(spec.test_size) % classes)])
    shifts = rng.integers(-SYNTHETIC_MAX_SHIFT, SYNTHETIC_MAX_SHIFT + 1, size=(n, 2))
    rows = (np.arange(size)[None, :] - shifts[:, :1]) % size
    cols = (np.arange(size)[None, :] - shifts[:, 1:]) % size
    shifted = prototypes[labels[:, None, None], rows[:, :, None], cols[:, None, :]]
    contrast = rng.uniform(0.7, 1.3, size=(n, 1, 1)).astype(np.float32)
    x = contrast * shifted + SYNTHETIC_NOISE * smooth_fields(rng, n, size, sigma=1.0)
    images = np.clip(np.rint(128 + 40 * x), 0, 255).astype(np.uint8)[:, None]
    labels = labels.astype(np.int64)
    for array in (images, labels):
        array.setflags(write=False)
    t = spec.train_size
    return images[:t], labels[:t], images[t:], labels[t:]
