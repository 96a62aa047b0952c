"""Which files each dataset is, where they go under the data directory, and whether they are there.

The one list of dataset files: the engine reads the files it names (`worker/subspace/data.py`),
downloads fetch and verify them (`idlab.dataset_download`), the API tells the new-run form which
are present (`GET /api/datasets`) and `idlab data list` checks them. Standard library only, so the
API can use it without loading torch.

Layout under the data directory (torchvision's, so an existing download can be reused):

    MNIST/raw/{train-images-idx3-ubyte, train-labels-idx1-ubyte,
               t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte}[.gz]    mnist
    FashionMNIST/raw/<the same four names>[.gz]                         fashion_mnist
    cifar-10-batches-py/{data_batch_1 … data_batch_5, test_batch}       cifar10 (python pickles)

A file is verified by the digests of its content, as the engine reads it: an IDX file's bytes
after gunzip, a CIFAR batch as extracted. Mirrors recompress the IDX archives (the same MNIST
comes as 9,912,422 or 9,630,634 bytes of gzip), so an archive's own digest would refuse good
copies; the content digests are the ones published for the original files.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 1 << 20


class DatasetMissing(FileNotFoundError):
    """A dataset's files are not in the data directory (and download was not allowed)."""

    def __init__(self, message: str, directory: Path, files: list[str]):
        super().__init__(message)
        self.directory = directory
        self.files = files


class DatasetCorrupt(ValueError):
    """A dataset file exists but is not what it should be."""


@dataclass(frozen=True)
class DataFile:
    """A file the engine reads: its name and the size and digests of its content."""

    name: str
    size: int
    md5: str
    sha256: str | None = None     # where one is published or derived from a verified copy
    gz_size: int | None = None    # the <name>.gz the public mirrors serve (an IDX file), in bytes


@dataclass(frozen=True)
class Archive:
    """What a mirror serves for several files at once (CIFAR-10's tarball), with its published md5."""

    name: str
    size: int
    md5: str


@dataclass(frozen=True)
class DatasetFiles:
    """A dataset on disk: its folder, its files, and how a mirror serves them.

    `gzipped`: each file is served as <name>.gz (the IDX datasets; the engine reads either form).
    `archive`: the files are served together in one tarball, under `folder` inside it (CIFAR-10).
    """

    name: str
    folder: str
    files: tuple[DataFile, ...]
    source: str
    gzipped: bool = False
    archive: Archive | None = None

    @property
    def file_names(self) -> list[str]:
        return [f.name for f in self.files]

    @property
    def served_bytes(self) -> int:
        """What a download of the whole dataset transfers from the public mirrors."""
        if self.archive is not None:
            return self.archive.size
        return sum(f.gz_size or f.size for f in self.files)

    def directory(self, root: Path) -> Path:
        return Path(root) / self.folder

    def candidates(self, root: Path, data_file: DataFile) -> list[Path]:
        """Where the engine looks for `data_file`, in order (the raw file before its .gz)."""
        path = self.directory(root) / data_file.name
        return [path, path.with_name(f"{path.name}.gz")] if self.gzipped else [path]

    def find(self, root: Path, data_file: DataFile) -> Path | None:
        return next((p for p in self.candidates(root, data_file) if p.is_file()), None)

    def missing(self, root: Path) -> list[str]:
        """Names of the files not found under `root` (in either form)."""
        return [f.name for f in self.files if self.find(root, f) is None]

    def expected_names(self) -> str:
        """The files to put in the folder, as an error message lists them."""
        suffix = "[.gz]" if self.gzipped else ""
        return ", ".join(f"{name}{suffix}" for name in self.file_names)


#: Every dataset read from files. Content md5s: those published for the original files (torchvision
#: lists them); MNIST's sha256: of content whose md5 matches those. Sizes: of the original files.
CATALOG: dict[str, DatasetFiles] = {
    "mnist": DatasetFiles("mnist", "MNIST/raw", gzipped=True, source="http://yann.lecun.com/exdb/mnist/", files=(
        DataFile("train-images-idx3-ubyte", 47_040_016, "6bbc9ace898e44ae57da46a324031adb",
                 "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", gz_size=9_912_422),
        DataFile("train-labels-idx1-ubyte", 60_008, "a25bea736e30d166cdddb491f175f624",
                 "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", gz_size=28_881),
        DataFile("t10k-images-idx3-ubyte", 7_840_016, "2646ac647ad5339dbf082846283269ea",
                 "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", gz_size=1_648_877),
        DataFile("t10k-labels-idx1-ubyte", 10_008, "27ae3e4e09519cfbb04c329615203637",
                 "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", gz_size=4_542))),
    "fashion_mnist": DatasetFiles("fashion_mnist", "FashionMNIST/raw", gzipped=True,
                                  source="https://github.com/zalandoresearch/fashion-mnist", files=(
        DataFile("train-images-idx3-ubyte", 47_040_016, "f4a8712d7a061bf5bd6d2ca38dc4d50a", gz_size=26_421_880),
        DataFile("train-labels-idx1-ubyte", 60_008, "9018921c3c673c538a1fc5bad174d6f9", gz_size=29_515),
        DataFile("t10k-images-idx3-ubyte", 7_840_016, "8181f5470baa50b63fa0f6fddb340f0a", gz_size=4_422_102),
        DataFile("t10k-labels-idx1-ubyte", 10_008, "15d484375f8d13e6eb1aabb0c3f46965", gz_size=5_148))),
    "cifar10": DatasetFiles(
        "cifar10", "cifar-10-batches-py", source="https://www.cs.toronto.edu/~kriz/cifar.html",
        archive=Archive("cifar-10-python.tar.gz", 170_498_071, "c58f30108f718f92721af3b95e74349a"),
        files=(DataFile("data_batch_1", 31_035_704, "c99cafc152244af753f735de768cd75f"),
               DataFile("data_batch_2", 31_035_320, "d4bba439e000b95fd0a9bffe97cbabec"),
               DataFile("data_batch_3", 31_035_999, "54ebc095f3ab1f0389bbae665268c751"),
               DataFile("data_batch_4", 31_035_696, "634d18415352ddfa80567beed471001a"),
               DataFile("data_batch_5", 31_035_623, "482c414d41f54cd18b22e5b47cb7c3cb"),
               DataFile("test_batch", 31_035_526, "40351d587109b95175f43aff81a1287e"))),
}


def dataset_files(name: str) -> DatasetFiles:
    """The catalog entry of `name`; a ValueError naming the datasets that have files otherwise."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ValueError(f"dataset {name!r} has no files to read or download: choose one of "
                         f"{', '.join(CATALOG)} (synthetic is generated in memory)") from None


# ---- verification ---------------------------------------------------------------------


class ContentDigest:
    """md5, sha256 and length of a stream of content, fed in chunks."""

    def __init__(self):
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        self.sha256.update(chunk)
        self.size += len(chunk)

    def mismatch(self, expected: DataFile) -> str | None:
        """Why the content is not `expected` (size, then sha256 where known, then md5), or None."""
        if self.size != expected.size:
            return f"{self.size:,} bytes of content, expected {expected.size:,}"
        if expected.sha256 and self.sha256.hexdigest() != expected.sha256:
            return f"sha256 {self.sha256.hexdigest()}, expected {expected.sha256}"
        if self.md5.hexdigest() != expected.md5:
            return f"md5 {self.md5.hexdigest()}, expected {expected.md5}"
        return None


class Gunzip:
    """Streaming gunzip of one or more concatenated gzip members, refusing more than `limit` bytes out."""

    def __init__(self, limit: int):
        self.limit, self.produced = limit, 0
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._in_member = False   # part of a member was fed and its end not reached yet

    def feed(self, chunk: bytes) -> bytes:
        out = []
        try:
            while chunk:
                self._in_member = True
                # At most one byte beyond the limit: a gzip bomb is refused before it is inflated.
                piece = self._inflate.decompress(chunk, self.limit - self.produced + 1)
                self.produced += len(piece)
                if self.produced > self.limit:
                    raise DatasetCorrupt(f"more than {self.limit:,} bytes once decompressed")
                out.append(piece)
                if self._inflate.eof:      # another member may follow
                    chunk = self._inflate.unused_data
                    self._inflate, self._in_member = zlib.decompressobj(16 + zlib.MAX_WBITS), False
                else:
                    chunk = self._inflate.unconsumed_tail
        except zlib.error as error:
            raise DatasetCorrupt(f"not a gzip file ({error})") from error
        return b"".join(out)

    def finish(self) -> None:
        """The stream ended: refuse it if a member was cut short or there was none."""
        if self._in_member or self.produced == 0:
            raise DatasetCorrupt("truncated gzip stream")


def verify_file(path: Path, expected: DataFile, gunzip: bool | None = None) -> str | None:
    """Why the file at `path` does not hold `expected`'s content, or None; a .gz is read decompressed
    unless `gunzip` says otherwise (an archive is verified as served)."""
    digest = ContentDigest()
    try:
        if path.name.endswith(".gz") if gunzip is None else gunzip:
            with gzip.open(path, "rb") as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    digest.update(chunk)
                    if digest.size > expected.size:
                        break
        else:
            with open(path, "rb") as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    digest.update(chunk)
    except (OSError, EOFError, zlib.error) as error:
        return f"cannot be read ({error})"
    return digest.mismatch(expected)


@dataclass(frozen=True)
class DatasetState:
    """What `idlab data list` reports of one dataset: present, missing or corrupt, with why."""

    name: str
    directory: Path
    state: str                 # "present", "missing" or "corrupt"
    problems: tuple[str, ...]  # one line per missing or corrupt file


def check_dataset(name: str, root: Path, verify: bool = True) -> DatasetState:
    """Whether every file of `name` is under `root` and, with `verify`, holds the published content."""
    entry = dataset_files(name)
    directory = entry.directory(root)
    missing = entry.missing(root)
    if missing:
        return DatasetState(name, directory, "missing", tuple(f"{f}: missing" for f in missing))
    if not verify:
        return DatasetState(name, directory, "present", ())
    problems = []
    for data_file in entry.files:
        path = entry.find(root, data_file)
        why = verify_file(path, data_file)
        if why:
            problems.append(f"{path.name}: {why}")
    return DatasetState(name, directory, "corrupt" if problems else "present", tuple(problems))
