"""A dataset mirror on 127.0.0.1 for the download tests: python's http.server in a thread, serving a folder.

The real MNIST archives (copies of the shared ones) are the real part: they are verified against the
published digests, as a download from a public mirror would be. Nothing is fetched from outside.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; `pause` seconds between 64 KiB pieces make a download last (0: at once)."""

    pause = 0.0

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        if not self.pause:
            return super().copyfile(source, outputfile)
        while piece := source.read(1 << 16):
            outputfile.write(piece)
            time.sleep(self.pause)


@contextlib.contextmanager
def serve(directory: Path, pause: float = 0.0) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving `directory`; yields its base URL (ending in /)."""
    handler = functools.partial(type("Handler", (QuietHandler,), {"pause": pause}), directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def copy_mnist(data_dir: Path, folder: Path) -> Path:
    """The four MNIST archives of `data_dir` (the `mnist_dir` fixture) copied into folder/mnist/, as a
    mirror of every dataset lays them out; that folder."""
    target = folder / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    archives = sorted((data_dir / "MNIST" / "raw").glob("*-ubyte.gz"))
    assert len(archives) == 4, f"the four MNIST archives are expected in {data_dir / 'MNIST' / 'raw'}"
    for archive in archives:
        shutil.copyfile(archive, target / archive.name)
    return target


def tamper(archive: Path) -> None:
    """Change one byte of the content of a .gz, keeping it a valid gzip file of the same length."""
    content = bytearray(gzip.decompress(archive.read_bytes()))
    content[-1] = (content[-1] + 1) % 256
    archive.write_bytes(gzip.compress(bytes(content)))
