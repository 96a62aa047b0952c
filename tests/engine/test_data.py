"""Datasets: IDX and CIFAR parsing, the restricted unpickler, scaling, synthetic data, downloads (local only)."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import pickle
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from idlab import dataset_files
from idlab.config import DATASETS, RunConfig
from tests.local_mirror import serve
from worker.subspace import data
from worker.subspace.data import (
    DatasetCorrupt,
    DatasetMissing,
    DownloadError,
    load_dataset,
    read_idx,
    synthetic_arrays,
)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def config(**fields) -> RunConfig:
    return RunConfig(projection="sparse", **fields)


# ---- fixtures written in tmp_path -----------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding: 0x00 0x00 0x08 <ndim>, big-endian uint32 dims, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_dataset(folder: Path, n_train: int = 30, n_test: int = 20, compress: bool = True, seed: int = 0):
    """Four small IDX files in torchvision's layout; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        else:
            (folder / name).write_bytes(idx_bytes(array))
    return arrays


def cifar_batch(n: int, seed: int) -> dict:
    """A batch as the real files hold it (bytes keys, uint8 (N, 3072) data, list of int labels)."""
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"fixture", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"img_%d.png" % i for i in range(n)]}


def write_cifar(folder: Path, n: int = 8, protocol: int = 2) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([*data.CIFAR_TRAIN_BATCHES, data.CIFAR_TEST_BATCH]):
        batches[name] = cifar_batch(n, seed=i)
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=protocol))
    return batches


# ---- the real MNIST -------------------------------------------------------------------


def test_real_mnist_loads_with_its_published_sizes_and_label_counts(mnist_dir):
    splits = load_dataset(config(dataset="mnist", input_scaling="unit"), mnist_dir)
    assert splits.train_x.shape == (60_000, 1, 28, 28) and splits.test_x.shape == (10_000, 1, 28, 28)
    assert splits.train_x.dtype == torch.float32 and splits.train_y.dtype == torch.int64
    assert torch.bincount(splits.train_y).tolist() == MNIST_TRAIN_COUNTS
    assert splits.test_y.shape == (10_000,)
    assert splits.train_x.min() == 0 and splits.train_x.max() == 1


# ---- IDX ------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_raw_or_gzip_load_exactly(tmp_path, compress):
    arrays = write_idx_dataset(tmp_path / "MNIST" / "raw", compress=compress)
    splits = load_dataset(config(dataset="mnist", input_scaling="raw"), tmp_path)
    assert splits.train_x.shape == (30, 1, 28, 28) and splits.test_x.shape == (20, 1, 28, 28)
    assert torch.equal(splits.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]).float())
    assert torch.equal(splits.test_x[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float())
    assert splits.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert splits.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw", seed=1)
    arrays = write_idx_dataset(tmp_path / "FashionMNIST" / "raw", n_train=40, seed=2)
    splits = load_dataset(config(dataset="fashion_mnist", input_scaling="raw"), tmp_path)
    assert splits.train_x.shape == (40, 1, 28, 28)
    assert torch.equal(splits.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]).float())


@pytest.mark.parametrize("corrupt, message", [
    (lambda good: b"\x01\x02" + good[2:], "magic"),
    (lambda good: good[:2] + b"\x0d" + good[3:], "element type"),
    (lambda good: good[:-5], "truncated"),
    (lambda good: b"", "magic"),
])
def test_a_corrupt_idx_file_is_a_clear_error(tmp_path, corrupt, message):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_dataset(folder, compress=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DatasetCorrupt, match=message) as error:
        load_dataset(config(dataset="mnist"), tmp_path)
    assert str(path.resolve()) in str(error.value)


def test_a_truncated_gzip_is_a_clear_error(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_dataset(folder)
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetCorrupt, match="t10k-images-idx3-ubyte.gz"):
        load_dataset(config(dataset="mnist"), tmp_path)


def test_images_and_labels_must_agree(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_dataset(folder)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(7, np.uint8))))
    with pytest.raises(DatasetCorrupt, match="expected 30 labels"):
        load_dataset(config(dataset="mnist"), tmp_path)


def test_parsed_files_are_cached_until_they_change(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_dataset(folder, compress=False)
    path = folder / "train-labels-idx1-ubyte"
    first = read_idx(path)
    assert read_idx(path) is first
    assert not first.flags.writeable
    path.write_bytes(idx_bytes(np.full(30, 7, np.uint8)))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert read_idx(path).tolist() == [7] * 30


# ---- CIFAR-10 -------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_batches_load(tmp_path, protocol):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    splits = load_dataset(config(dataset="cifar10", model="lenet", input_scaling="raw"), tmp_path)
    assert splits.train_x.shape == (40, 3, 32, 32) and splits.test_x.shape == (8, 3, 32, 32)
    first = batches["data_batch_1"]
    assert torch.equal(splits.train_x[:8], torch.from_numpy(first[b"data"].reshape(8, 3, 32, 32)).float())
    assert splits.train_y[:8].tolist() == first[b"labels"]
    assert splits.test_y.tolist() == batches["test_batch"][b"labels"]


class RunsAShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class CallsEval:
    def __reduce__(self):
        return eval, ("__import__('os').getpid()",)


@pytest.mark.parametrize("payload, refused", [
    (lambda marker: RunsAShellCommand(marker), "refusing to unpickle (posix|os|nt).system"),
    (lambda marker: {b"data": CallsEval(), b"labels": []}, "refusing to unpickle (builtins|__builtin__).eval"),
])
def test_a_malicious_pickle_is_refused_before_anything_runs(tmp_path, payload, refused):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "pwned"
    (folder / "data_batch_3").write_bytes(pickle.dumps(payload(marker), protocol=2))
    with pytest.raises(DatasetCorrupt, match=refused):
        load_dataset(config(dataset="cifar10"), tmp_path)
    assert not marker.exists()


def test_a_cifar_batch_of_the_wrong_shape_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DatasetCorrupt, match="3072"):
        load_dataset(config(dataset="cifar10"), tmp_path)


# ---- missing data ---------------------------------------------------------------------


@pytest.mark.parametrize("dataset, folder, names", [
    ("mnist", "MNIST/raw", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    ("fashion_mnist", "FashionMNIST/raw", ["train-labels-idx1-ubyte"]),
    ("cifar10", "cifar-10-batches-py", ["data_batch_1", "data_batch_5", "test_batch"]),
])
def test_missing_data_says_what_to_put_where(tmp_path, dataset, folder, names):
    with pytest.raises(DatasetMissing) as error:
        load_dataset(config(dataset=dataset), tmp_path)
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    assert str((tmp_path / folder).resolve()) in message
    assert all(name in message for name in names)
    assert ("or let the lab download it: IDLAB_ALLOW_DOWNLOAD=1 (the default), "
            f"or `idlab data fetch {dataset}`") in message
    assert error.value.directory == tmp_path / folder


def test_a_partly_missing_dataset_names_the_missing_file(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_dataset(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetMissing, match="missing: t10k-labels-idx1-ubyte —"):
        load_dataset(config(dataset="mnist"), tmp_path)


def test_the_engine_reads_no_environment_the_settings_pass_the_data_dir(tmp_path, monkeypatch):
    from backend.domain.settings import Settings

    write_idx_dataset(tmp_path / "MNIST" / "raw")
    monkeypatch.setenv("IDLAB_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="no data directory given"):
        load_dataset(config(dataset="mnist"), None)
    assert load_dataset(config(dataset="mnist"), Settings().data_dir).train_x.shape[0] == 30


# ---- scaling and sizes ----------------------------------------------------------------


def test_input_scalings(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py", n=20)
    load = functools.partial(load_dataset, data_dir=tmp_path)
    raw = load(config(dataset="cifar10", input_scaling="raw"))
    unit = load(config(dataset="cifar10", input_scaling="unit"))
    standard = load(config(dataset="cifar10", input_scaling="standardize"))

    assert raw.train_x.min() == 0 and raw.train_x.max() == 255
    assert torch.equal(raw.train_x, raw.train_x.round())
    assert torch.allclose(unit.train_x, raw.train_x / 255) and unit.train_x.max() <= 1

    channel_mean = raw.train_x.double().mean(dim=(0, 2, 3), keepdim=True)
    channel_std = raw.train_x.double().std(dim=(0, 2, 3), keepdim=True, correction=0)
    assert torch.allclose(standard.train_x.double().mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(standard.train_x.double().std(dim=(0, 2, 3), correction=0),
                          torch.ones(3, dtype=torch.float64), atol=1e-5)
    # The test split is scaled with the training split's statistics.
    expected_test = ((raw.test_x.double() - channel_mean) / channel_std).float()
    assert torch.allclose(standard.test_x, expected_test, atol=1e-5)
    assert all(s.train_y.dtype == torch.int64 for s in (raw, unit, standard))
    # Scaling never touches the cached arrays.
    assert torch.equal(load(config(dataset="cifar10", input_scaling="raw")).train_x, raw.train_x)


def test_train_size_and_test_size_keep_the_first_examples(tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw")
    full = load_dataset(config(dataset="mnist", input_scaling="unit"), tmp_path)
    cut = load_dataset(config(dataset="mnist", input_scaling="unit", train_size=12, test_size=5), tmp_path)
    assert cut.train_x.shape[0] == 12 and cut.test_x.shape[0] == 5
    assert torch.equal(cut.train_x, full.train_x[:12]) and torch.equal(cut.test_y, full.test_y[:5])
    synthetic = load_dataset(config(dataset="synthetic", train_size=100, test_size=50), None)
    assert synthetic.train_x.shape == (100, 1, 28, 28) and synthetic.test_y.shape == (50,)


# ---- synthetic ------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_balanced():
    first = synthetic_arrays()
    synthetic_arrays.cache_clear()
    second = synthetic_arrays()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    train_images, train_labels, test_images, test_labels = second
    assert train_images.shape == (6000, 1, 28, 28) and test_images.shape == (1000, 1, 28, 28)
    assert train_images.dtype == np.uint8
    assert np.bincount(train_labels).tolist() == [600] * 10
    assert np.bincount(test_labels).tolist() == [100] * 10


def test_synthetic_does_not_depend_on_the_run_seed():
    a = load_dataset(config(dataset="synthetic", seed=0, input_scaling="raw"), None)
    b = load_dataset(config(dataset="synthetic", seed=99, input_scaling="raw"), None)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.train_x.min() >= 0 and a.train_x.max() <= 255 and a.train_x.std() > 20


def test_synthetic_is_learnable_but_not_trivial():
    train_images, train_labels, test_images, test_labels = (a.astype(np.float64) for a in synthetic_arrays())
    train = train_images.reshape(len(train_images), -1)
    test = test_images.reshape(len(test_images), -1)
    centroids = np.stack([train[train_labels == c].mean(axis=0) for c in range(10)])
    predicted = ((test[:, None, :] - centroids[None]) ** 2).sum(axis=-1).argmin(axis=1)
    accuracy = (predicted == test_labels).mean()
    assert 0.6 < accuracy < 0.995  # a nearest-centroid classifier: ~0.96
    # Examples of one class differ (shift, contrast, noise), not copies of a prototype.
    same_class = train[train_labels == 0]
    assert np.abs(same_class[0] - same_class[1]).mean() > 10


# ---- downloads from a local server ----------------------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local mirror of small fixture files (every dataset under <url><name>/); the catalog's digests of
    fashion_mnist and cifar10 are those of the fixtures. Yields (url, the IDX arrays served)."""
    served = tmp_path / "mirror"
    arrays = write_idx_dataset(served / "fashion_mnist", n_train=25, n_test=15, seed=3)
    batches = served / "batches" / data.CIFAR_FOLDER
    write_cifar(batches, n=4)
    (served / "cifar10").mkdir()
    with tarfile.open(served / "cifar10" / data.CIFAR_ARCHIVE, "w:gz") as tar:
        tar.add(batches, arcname=data.CIFAR_FOLDER)
    idx = dataset_files.CATALOG["fashion_mnist"]
    monkeypatch.setitem(dataset_files.CATALOG, "fashion_mnist", dataclasses.replace(idx, files=tuple(
        dataset_files.DataFile(f.name, len(content := idx_bytes(arrays[f.name])), md5(content), gz_size=None)
        for f in idx.files)))
    archive = (served / "cifar10" / data.CIFAR_ARCHIVE).read_bytes()
    cifar = dataset_files.CATALOG["cifar10"]
    monkeypatch.setitem(dataset_files.CATALOG, "cifar10", dataclasses.replace(
        cifar, archive=dataset_files.Archive(cifar.archive.name, len(archive), md5(archive)),
        files=tuple(dataset_files.DataFile(f.name, len(b := (batches / f.name).read_bytes()), md5(b))
                    for f in cifar.files)))
    with serve(served) as url:
        yield url, arrays


def test_load_dataset_downloads_only_when_allowed_and_reports_its_progress(tmp_path, mirror):
    url, arrays = mirror
    root = tmp_path / "data"
    with pytest.raises(DatasetMissing):
        load_dataset(config(dataset="fashion_mnist"), root, mirrors=[url])  # download not allowed: nothing fetched
    assert not root.exists()

    reports = []
    splits = load_dataset(config(dataset="fashion_mnist", input_scaling="raw"), root, download=True, mirrors=[url],
                          on_progress=lambda done, total: reports.append((done, total)))
    folder = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.gz" for n in data.IDX_FILES.values())
    assert torch.equal(splits.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]).float())
    served = sum(p.stat().st_size for p in (tmp_path / "mirror" / "fashion_mnist").iterdir())
    assert reports[-1] == (served, served) and reports[0] == (0, None), "sizes unknown until the mirror says them"
    # Present files are not fetched again: no mirror is asked, no progress reported.
    reports.clear()
    assert load_dataset(config(dataset="fashion_mnist"), root, download=True, mirrors=["http://127.0.0.1:9/"],
                        on_progress=lambda *a: reports.append(a)).test_x.shape[0] == 15
    assert reports == []


def test_download_of_cifar10_extracts_the_verified_batches(tmp_path, mirror):
    url, _ = mirror
    root = tmp_path / "data"
    splits = load_dataset(config(dataset="cifar10", input_scaling="unit"), root, download=True, mirrors=[url])
    assert splits.train_x.shape == (20, 3, 32, 32) and splits.test_x.shape == (4, 3, 32, 32)
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == sorted(
        [*data.CIFAR_TRAIN_BATCHES, data.CIFAR_TEST_BATCH])
    # A lost batch is extracted again from the kept archive, without a mirror.
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    load_dataset(config(dataset="cifar10"), root, download=True, mirrors=["http://127.0.0.1:9/"])
    assert (root / "cifar-10-batches-py" / "data_batch_3").is_file()


def test_a_checksum_mismatch_deletes_the_download(tmp_path, mirror, monkeypatch):
    url, _ = mirror
    entry = dataset_files.CATALOG["fashion_mnist"]
    wrong = [dataclasses.replace(f, md5="0" * 32) if f.name == "t10k-images-idx3-ubyte" else f for f in entry.files]
    monkeypatch.setitem(dataset_files.CATALOG, "fashion_mnist", dataclasses.replace(entry, files=tuple(wrong)))
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="t10k-images-idx3-ubyte.gz: checksum mismatch: md5 [0-9a-f]{32}, "
                                            "expected 0{32} once decompressed"):
        load_dataset(config(dataset="fashion_mnist"), root, download=True, mirrors=[url])
    folder = root / "FashionMNIST" / "raw"
    assert not any(p.name.startswith(("t10k-images", ".t10k-images")) for p in folder.iterdir())


def test_an_unreachable_file_is_a_download_error(tmp_path, mirror):
    url, _ = mirror
    with pytest.raises(DownloadError, match="HTTP 404"):
        load_dataset(config(dataset="fashion_mnist"), tmp_path / "data", download=True, mirrors=[url + "nowhere/"])
    assert not any((tmp_path / "data" / "FashionMNIST" / "raw").iterdir())


def test_the_engine_reads_the_files_the_catalog_lists():
    assert data.IDX_FOLDERS == {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw"}
    assert list(data.IDX_FILES.values()) == dataset_files.CATALOG["mnist"].file_names
    assert [*data.CIFAR_TRAIN_BATCHES, data.CIFAR_TEST_BATCH] == dataset_files.CATALOG["cifar10"].file_names
    assert set(dataset_files.CATALOG) | {"synthetic"} == set(DATASETS)
