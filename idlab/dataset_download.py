"""Downloading a dataset's missing files from its mirrors, each verified before it is kept.

Every file is tried at each mirror in turn (`IDLAB_DATASET_MIRRORS`, else `DEFAULT_MIRRORS`):
a mirror that is down, answers an error, or serves content whose size or digest is not the
published one (`idlab.dataset_files.CATALOG`) is skipped for the next. A file is written beside
its destination and renamed into place only once verified, so an interrupted or refused download
leaves nothing behind, and the files already fetched are kept for the next try. When no mirror
serves a file, the error names every mirror's answer, the files and the folder to put them in.

Standard library only: the CLI (`idlab data fetch`) and the worker both use it.
"""

from __future__ import annotations

import functools
import http.client
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from idlab import __version__
from idlab.dataset_files import (
    CHUNK_BYTES,
    Archive,
    ContentDigest,
    DataFile,
    DatasetCorrupt,
    DatasetFiles,
    Gunzip,
    dataset_files,
    verify_file,
)

#: The public mirrors, tried in this order: `DATASET=URL` serves that dataset's files at URL<file>.
DEFAULT_MIRRORS: tuple[str, ...] = (
    "mnist=https://ossci-datasets.s3.amazonaws.com/mnist/",
    "mnist=https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist=http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "fashion_mnist=https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "cifar10=https://www.cs.toronto.edu/~kriz/",
)
TIMEOUT_S = 60
#: A mirror may serve a differently compressed copy, but not more than this times the public size.
MAX_SERVED_FACTOR = 2

#: on_progress(bytes done, total bytes or None): how far a download is, over all its files.
ProgressCallback = Callable[[int, "int | None"], None]


class DownloadError(RuntimeError):
    """No mirror served a file with the right content; nothing unverified was kept."""

    def __init__(self, message: str, directory: Path, files: list[str]):
        super().__init__(message)
        self.directory = directory
        self.files = files


# ---- mirrors --------------------------------------------------------------------------


@dataclass(frozen=True)
class Mirror:
    """A base URL serving one dataset's files (`dataset` set), or every dataset under <url><dataset>/."""

    url: str
    dataset: str | None = None

    def base_for(self, name: str) -> str | None:
        if self.dataset is None:
            return f"{self.url}{name}/"
        return self.url if self.dataset == name else None


def parse_mirror(entry: str) -> Mirror:
    """`DATASET=URL` or `URL`; a ValueError saying what to write otherwise."""
    text = entry.strip()
    dataset, url = (text.split("=", 1) if "=" in text.split("://", 1)[0] else (None, text))
    if dataset is not None:
        dataset = dataset.strip()
        try:
            dataset_files(dataset)
        except ValueError as error:
            raise ValueError(f"mirror {entry!r}: {error}") from None
    url = url.strip()
    if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise ValueError(f"mirror {entry!r}: give an http:// or https:// URL, as DATASET=URL (that dataset's files "
                         f"at URL<file>) or URL (every dataset's files at URL<dataset>/<file>), e.g. "
                         f"mnist=https://ossci-datasets.s3.amazonaws.com/mnist/")
    return Mirror(url if url.endswith("/") else f"{url}/", dataset)


def mirror_bases(name: str, entries: Iterable[str]) -> list[str]:
    """The base URLs that serve dataset `name`, in the order given."""
    bases = [parse_mirror(entry).base_for(name) for entry in entries]
    return list(dict.fromkeys(base for base in bases if base))


# ---- progress -------------------------------------------------------------------------


class Progress:
    """Bytes received over a download's files; each file's size is the public one until a mirror says its own."""

    def __init__(self, callback: ProgressCallback | None, expected: list[int | None]):
        self.callback, self.expected, self.done = callback, list(expected), 0

    @property
    def total(self) -> int | None:
        return None if any(size is None for size in self.expected) else sum(self.expected)

    def sized(self, index: int, length: int | None) -> None:
        if length is not None:
            self.expected[index] = length
        self.report()

    def add(self, received: int) -> None:
        self.done += received
        self.report()

    def rewind(self, done: int) -> None:
        self.done = done
        self.report()

    def finish(self) -> None:
        """Everything is in: done is the total, whatever the sizes announced."""
        self.expected = [self.done]
        self.report()

    def report(self) -> None:
        if self.callback is not None:
            self.callback(self.done, self.total)


# ---- the download ---------------------------------------------------------------------


def publish(temporary: str | os.PathLike, destination: Path) -> None:
    """Move a verified download into place, readable as any file the user creates (mkstemp makes it 0600:
    a worker or container running as another user of the same data directory could not read it)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    os.replace(temporary, destination)


def download_dataset(name: str, root: str | os.PathLike, mirrors: Sequence[str],
                     on_progress: ProgressCallback | None = None) -> list[str]:
    """Fetch whatever of `name` is missing under `root` from `mirrors` (setting entries); the names fetched.

    IDX datasets: each missing file as <folder>/<file>.gz. CIFAR-10: its tarball into `root` (kept,
    so the batches can be extracted again without a download), then the missing batches extracted
    into <folder> (only those regular files, never paths the archive names).
    """
    entry = dataset_files(name)
    root = Path(root)
    missing = entry.missing(root)
    if not missing:
        return []
    bases = mirror_bases(name, mirrors)
    if entry.archive is not None:
        return _download_archive(entry, root, bases, missing, on_progress)
    wanted = [f for f in entry.files if f.name in missing]
    progress = Progress(on_progress, [f.gz_size for f in wanted])
    progress.report()
    for index, data_file in enumerate(wanted):
        destination = entry.directory(root) / f"{data_file.name}.gz"
        check = functools.partial(GzipCheck, data_file, data_file.gz_size or data_file.size)
        served_by = _fetch_from_mirrors(entry, root, bases, f"{data_file.name}.gz", destination, missing, progress,
                                        index, check)
        bases = [served_by, *(base for base in bases if base != served_by)]   # a mirror down is not waited for again
    progress.finish()
    return [f.name for f in wanted]


def _download_archive(entry: DatasetFiles, root: Path, bases: list[str], missing: list[str],
                      on_progress: ProgressCallback | None) -> list[str]:
    archive: Archive = entry.archive  # type: ignore[assignment]
    path = root / archive.name
    progress = Progress(on_progress, [archive.size])
    if not (path.is_file() and verify_archive(path, archive) is None):
        progress.report()
        _fetch_from_mirrors(entry, root, bases, archive.name, path, missing, progress, 0,
                            lambda: ArchiveCheck(archive))
    extract_members(path, entry, missing)
    progress.finish()
    return missing


def _fetch_from_mirrors(entry: DatasetFiles, root: Path, bases: list[str], served_name: str, destination: Path,
                        missing: list[str], progress: Progress, index: int, make_check) -> str:
    """Fetch `served_name` from the first of `bases` that serves it right; that base."""
    failures = []
    for base in bases:
        started_at = progress.done
        url = base + served_name
        try:
            fetch(url, destination, make_check(), progress, index)
            return base
        except DownloadRefused as refused:
            failures.append(f"  {url}: {refused}")
            progress.rewind(started_at)
    tried = "\n".join(failures) or "  (no mirror is configured for this dataset)"
    missing = entry.missing(root)   # those fetched before this one are in place
    raise DownloadError(
        f"dataset {entry.name!r} could not be downloaded: no mirror served {served_name}\n{tried}\n"
        f"Put the files {entry.expected_names()} in {entry.directory(root).resolve()} "
        f"(missing: {', '.join(missing)}; from {entry.source}), or fetch them where a mirror is reachable with "
        f"`idlab data fetch {entry.name}`; the mirrors tried are the setting IDLAB_DATASET_MIRRORS.",
        entry.directory(root), missing)


class DownloadRefused(Exception):
    """One mirror's answer for one file was unusable: unreachable, an error, or the wrong content."""


class GzipCheck:
    """Verifies a served .gz by its content: gunzipped on the fly, sized and digested."""

    def __init__(self, data_file: DataFile, served_size: int):
        self.data_file, self.limit = data_file, MAX_SERVED_FACTOR * served_size
        self.gunzip, self.digest = Gunzip(limit=data_file.size), ContentDigest()

    def feed(self, chunk: bytes) -> None:
        self.digest.update(self.gunzip.feed(chunk))

    def finish(self) -> str | None:
        self.gunzip.finish()
        why = self.digest.mismatch(self.data_file)
        return f"{why} once decompressed" if why else None


class ArchiveCheck:
    """Verifies a served archive by its own size and md5."""

    def __init__(self, archive: Archive):
        self.archive, self.limit, self.digest = archive, archive.size, ContentDigest()

    def feed(self, chunk: bytes) -> None:
        self.digest.update(chunk)

    def finish(self) -> str | None:
        return self.digest.mismatch(DataFile(self.archive.name, self.archive.size, self.archive.md5))


def fetch(url: str, destination: Path, check, progress: Progress, index: int) -> None:
    """Stream url into a temporary file beside destination, fed to `check`; renamed into place once it passes."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    try:
        with os.fdopen(descriptor, "wb") as out:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": f"idlab/{__version__}"})
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - http(s) only
                    length = response.headers.get("Content-Length")
                    served = int(length) if length and length.isdigit() else None
                    if served is not None and served > check.limit:
                        raise DownloadRefused(f"serves {served:,} bytes, more than the {check.limit:,} expected")
                    progress.sized(index, served)
                    received = 0
                    while chunk := response.read(CHUNK_BYTES // 4):
                        received += len(chunk)
                        if received > check.limit:
                            raise DownloadRefused(f"sent more than the {check.limit:,} bytes expected")
                        check.feed(chunk)
                        out.write(chunk)
                        progress.add(len(chunk))
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
                raise DownloadRefused(_reason(error)) from error
            except DatasetCorrupt as error:
                raise DownloadRefused(f"not the published file ({error}); nothing was kept") from error
        why = check.finish()
        if why:
            raise DownloadRefused(f"checksum mismatch: {why}; the download was deleted (a corrupted transfer "
                                  f"or a changed mirror)")
        publish(temporary, destination)
    except DatasetCorrupt as error:
        raise DownloadRefused(f"not the published file ({error}); the download was deleted") from error
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"unreachable ({error.reason})"
    return f"{type(error).__name__}: {error}"


# ---- archives -------------------------------------------------------------------------


def verify_archive(path: Path, archive: Archive) -> str | None:
    return verify_file(path, DataFile(archive.name, archive.size, archive.md5), gunzip=False)


def extract_members(archive_path: Path, entry: DatasetFiles, names: list[str]) -> None:
    """Copy <folder>/<name> for each name out of the tarball, each verified and written atomically."""
    folder = entry.directory(archive_path.parent)
    folder.mkdir(parents=True, exist_ok=True)
    by_name = {f.name: f for f in entry.files}
    try:
        with tarfile.open(archive_path, "r:gz") as tar:
            for name in names:
                member = tar.getmember(f"{Path(entry.folder).name}/{name}")
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    raise DatasetCorrupt(f"{archive_path}: {member.name} is not a regular file")
                digest = ContentDigest()
                descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
                try:
                    with os.fdopen(descriptor, "wb") as out, source:
                        while chunk := source.read(CHUNK_BYTES):
                            digest.update(chunk)
                            out.write(chunk)
                    why = digest.mismatch(by_name[name])
                    if why:
                        raise DatasetCorrupt(f"{archive_path}: {member.name} is not the published file ({why})")
                    publish(temporary, folder / name)
                finally:
                    if os.path.exists(temporary):
                        os.unlink(temporary)
    except (tarfile.TarError, KeyError, EOFError, OSError) as error:
        raise DatasetCorrupt(f"{archive_path}: cannot extract {entry.name}'s files ({error!r}); delete it and "
                             f"download again") from error
