"""Datasets on first use: downloads from local mirrors (verified, mirror after mirror), the errors when
none serves, the mirror setting, and `idlab data fetch` / `idlab data list` as a researcher types them.

Every mirror here is python's http.server on 127.0.0.1 (tests/local_mirror.py) serving copies of the
real MNIST archives, which are verified against the published digests like any download."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.domain.settings import Settings
from idlab.dataset_download import DownloadError, download_dataset, mirror_bases, parse_mirror
from idlab.dataset_files import CATALOG, check_dataset
from tests.local_mirror import copy_mnist, serve, tamper

MNIST_FILES = CATALOG["mnist"].file_names
CLOSED = "http://127.0.0.1:9/"   # nothing listens on loopback's discard port: refused at once


@pytest.fixture
def mirror_folder(tmp_path, mnist_dir) -> Path:
    """A folder laid out as a mirror of every dataset, holding mnist/ (copies of the real archives)."""
    folder = tmp_path / "mirror"
    copy_mnist(mnist_dir, folder)
    return folder


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---- downloads ------------------------------------------------------------------------


def test_a_download_from_a_mirror_is_verified_placed_and_reported(tmp_path, mirror_folder):
    root = tmp_path / "data"
    reports = []
    with serve(mirror_folder) as url:
        fetched = download_dataset("mnist", root, [url], on_progress=lambda done, total: reports.append((done, total)))

    assert fetched == MNIST_FILES
    folder = root / "MNIST" / "raw"
    assert leftovers(folder) == sorted(f"{name}.gz" for name in MNIST_FILES), "nothing but the verified archives"
    assert check_dataset("mnist", root).state == "present"
    umask = os.umask(0)
    os.umask(umask)
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o666 & ~umask}, "readable as any file"
    served = sum(p.stat().st_size for p in (mirror_folder / "mnist").iterdir())
    assert reports[0][0] == 0 and reports[-1] == (served, served)
    assert all(a[0] <= b[0] for a, b in zip(reports, reports[1:], strict=False)), "bytes done never go back on success"
    assert any(0 < done < served for done, _ in reports), "progress is reported while the bytes come in"
    # Present files are not fetched again: no mirror is even asked.
    assert download_dataset("mnist", root, [CLOSED]) == []


def test_a_wrong_checksum_is_refused_with_a_clear_error_and_nothing_is_kept(tmp_path, mirror_folder):
    tamper(mirror_folder / "mnist" / "t10k-labels-idx1-ubyte.gz")
    root = tmp_path / "data"
    with serve(mirror_folder) as url, pytest.raises(DownloadError) as refused:
        download_dataset("mnist", root, [url])

    message = str(refused.value)
    assert f"{url}mnist/t10k-labels-idx1-ubyte.gz: checksum mismatch: sha256 " in message
    assert f"expected {CATALOG['mnist'].files[3].sha256} once decompressed; the download was deleted" in message
    folder = root / "MNIST" / "raw"
    assert leftovers(folder) == sorted(f"{name}.gz" for name in MNIST_FILES[:3]), \
        "the good files are kept for the next try; of the refused one, nothing (no partial file either)"
    assert refused.value.directory == folder and refused.value.files == ["t10k-labels-idx1-ubyte"]


def test_a_mirror_down_or_answering_404_or_serving_a_bad_copy_is_skipped_for_the_next(tmp_path, mirror_folder):
    bad = tmp_path / "bad-mirror"
    (bad / "mnist").mkdir(parents=True)
    tampered = bad / "mnist" / "train-labels-idx1-ubyte.gz"
    tampered.write_bytes((mirror_folder / "mnist" / tampered.name).read_bytes())
    tamper(tampered)
    root = tmp_path / "data"
    with serve(bad) as bad_url, serve(mirror_folder) as good_url:
        # Down, then 404 for three files and a bad copy of the fourth, then the good mirror.
        download_dataset("mnist", root, [CLOSED, bad_url, good_url])
    assert check_dataset("mnist", root).state == "present"


def test_with_every_mirror_down_the_error_names_each_answer_the_files_and_the_folder(tmp_path):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    root = tmp_path / "data"
    with serve(empty) as url, pytest.raises(DownloadError) as failed:
        download_dataset("mnist", root, [CLOSED, f"mnist={url}"])

    message = str(failed.value)
    folder = (root / "MNIST" / "raw").resolve()
    assert f"{CLOSED}mnist/train-images-idx3-ubyte.gz: unreachable (" in message
    assert f"{url}train-images-idx3-ubyte.gz: HTTP 404" in message
    assert f"Put the files {', '.join(f'{n}[.gz]' for n in MNIST_FILES)} in {folder} " in message
    assert "`idlab data fetch mnist`" in message and "IDLAB_DATASET_MIRRORS" in message
    assert failed.value.files == MNIST_FILES
    assert leftovers(root / "MNIST" / "raw") == []


def test_a_mirror_serving_more_than_the_file_holds_is_cut_off(tmp_path, mirror_folder):
    """A gzip bomb (or a wrong file) is refused as soon as it inflates past the published size."""
    bomb = mirror_folder / "mnist" / "train-labels-idx1-ubyte.gz"
    bomb.write_bytes(gzip.compress(bytes(50_000_000)))     # 50 MB of zeros, 49 kB of gzip
    with serve(mirror_folder) as url, pytest.raises(DownloadError, match=r"more than 60,008 bytes once decompressed"):
        download_dataset("mnist", tmp_path / "data", [url])


# ---- the mirror setting ---------------------------------------------------------------


def test_mirror_entries_name_one_dataset_or_serve_each_under_its_name():
    entries = ["mnist=http://a.example/mnist-files", "http://b.example/all/", "cifar10=https://c.example/"]
    assert mirror_bases("mnist", entries) == ["http://a.example/mnist-files/", "http://b.example/all/mnist/"]
    assert mirror_bases("cifar10", entries) == ["http://b.example/all/cifar10/", "https://c.example/"]
    assert parse_mirror("http://d.example/?a=b").dataset is None, "an = in a URL's query is not a dataset"


@pytest.mark.parametrize("entry,says", [("ftp://x.example/", "give an http:// or https:// URL"),
                                        ("imagenet=http://x.example/", "dataset 'imagenet' has no files"),
                                        ("mnist", "give an http:// or https:// URL")])
def test_a_bad_mirror_entry_is_refused_when_the_settings_are_read(entry, says):
    with pytest.raises(ValidationError, match=says):
        Settings(_env_file=None, dataset_mirrors=[entry])


def test_downloads_are_on_by_default_from_the_public_mirrors(monkeypatch):
    monkeypatch.delenv("IDLAB_DATASET_MIRRORS", raising=False)
    monkeypatch.delenv("IDLAB_ALLOW_DOWNLOAD", raising=False)
    settings = Settings(_env_file=None)
    assert settings.allow_download is True
    assert mirror_bases("mnist", settings.dataset_mirrors) == ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                                                               "https://storage.googleapis.com/cvdf-datasets/mnist/"]
    assert all(mirror_bases(name, settings.dataset_mirrors) for name in CATALOG)
    monkeypatch.setenv("IDLAB_DATASET_MIRRORS", f"{CLOSED}, mnist=http://127.0.0.1:8/x")
    assert Settings(_env_file=None).dataset_mirrors == [CLOSED, "mnist=http://127.0.0.1:8/x"]


# ---- the command line -----------------------------------------------------------------


def idlab(*args, data_dir: Path, mirrors: str = CLOSED, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "IDLAB_DATA_DIR": str(data_dir), "IDLAB_DATASET_MIRRORS": mirrors, **env}
    return subprocess.run([sys.executable, "-m", "idlab.launchers.cli", *args], env=environment, capture_output=True,
                          text=True, timeout=300)


def test_idlab_data_fetch_then_list_says_present(tmp_path, mirror_folder):
    data_dir = tmp_path / "data"
    with serve(mirror_folder) as url:
        fetched = idlab("data", "fetch", "mnist", data_dir=data_dir, mirrors=f"{CLOSED},{url}")
    assert fetched.returncode == 0, fetched.stderr
    folder = (data_dir / "MNIST" / "raw").resolve()
    assert f"mnist: present in {folder} (downloaded {', '.join(MNIST_FILES)})" in fetched.stdout
    assert "downloading mnist: 100%" in fetched.stderr, "a progress line on the terminal"

    listed = idlab("data", "list", data_dir=data_dir)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line.split() for line in listed.stdout.splitlines()}
    assert lines["mnist"][1:3] == ["present", str(folder)]
    assert lines["cifar10"][1:3] == ["missing", str((data_dir / "cifar-10-batches-py").resolve())]
    assert "170 MB to download" in listed.stdout


def test_idlab_data_list_finds_a_corrupt_file_and_fetch_offline_names_the_folder(tmp_path, mirror_folder):
    data_dir = tmp_path / "data"
    (data_dir / "MNIST").mkdir(parents=True)
    raw = data_dir / "MNIST" / "raw"
    (mirror_folder / "mnist").rename(raw)
    tamper(raw / "train-labels-idx1-ubyte.gz")

    listed = idlab("data", "list", data_dir=data_dir)
    assert listed.returncode == 1
    assert f"mnist          corrupt  {raw.resolve()}" in listed.stdout
    assert "train-labels-idx1-ubyte.gz: sha256 " in listed.stdout and "delete it" in listed.stderr

    (raw / "train-labels-idx1-ubyte.gz").unlink()
    offline = idlab("data", "fetch", "mnist", data_dir=data_dir)
    assert offline.returncode == 1
    assert f"in {raw.resolve()} (missing: train-labels-idx1-ubyte;" in offline.stderr
    assert "unreachable" in offline.stderr


def test_idlab_train_offline_says_which_files_to_put_where(tmp_path):
    done = idlab("train", "--dataset", "mnist", "--epochs", "1", data_dir=tmp_path, IDLAB_ALLOW_DOWNLOAD="0")
    assert done.returncode == 2
    folder = (tmp_path / "MNIST" / "raw").resolve()
    assert "dataset 'mnist' not found: put the IDX files" in done.stderr and str(folder) in done.stderr
    assert "`idlab data fetch mnist`" in done.stderr
