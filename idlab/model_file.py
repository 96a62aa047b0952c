"""A model file's envelope, read without torch: its magic line, its JSON header and the checksum over both.

The file of a trained subspace run (written by worker/subspace/export.py) is

    idlab-subspace-model\\n  <one line of JSON: the header>\\n  <the trained tensors, float32 little-endian>

The API checks a file it is sent with `read_header` (format, checksum, a valid config)
before a worker rebuilds the network from it, so a damaged or foreign file is refused at
once with the reason, and no client bytes ever reach torch unchecked.
"""

from __future__ import annotations

import hashlib
import json

from idlab import metrics as M

MAGIC = b"idlab-subspace-model\n"
FORMAT = 1
BYTES_PER_WEIGHT = 4


class ModelFileError(ValueError):
    """The file cannot be evaluated as the run it describes; the message says why and what to do."""


def read_header(data: bytes) -> tuple[dict, bytes]:
    """The header and the tensor bytes of a model file, checked against its sha256."""
    if not data.startswith(MAGIC):
        raise ModelFileError("not an idlab model file (it should begin with 'idlab-subspace-model'): export one "
                             "from a succeeded subspace run")
    line_end = data.find(b"\n", len(MAGIC))
    if line_end < 0:
        raise ModelFileError("the model file is cut short (no header line): export it again")
    try:
        header = json.loads(data[len(MAGIC):line_end])
    except ValueError as error:
        raise ModelFileError(f"the model file's header is not JSON ({error}): the file is damaged") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else None
        writer = header.get("torch", "?") if isinstance(header, dict) else "?"
        raise ModelFileError(f"model file format {found!r}, but this lab reads format {FORMAT}: evaluate it with "
                             f"the lab version that wrote it (torch {writer}), or export the run again")
    payload = data[line_end + 1:]
    stated = header.pop("sha256", None)
    if stated != digest(header, payload):
        raise ModelFileError("the model file's checksum does not match its contents: it was changed or damaged "
                             "after export; export the run again")
    return header, payload


def digest(header: dict, payload: bytes) -> str:
    """sha256 of the header (without its own sha256 field, keys sorted) and then the tensor bytes."""
    hashed = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    hashed.update(payload)
    return hashed.hexdigest()


def sizes(D: int, file_bytes: int) -> dict:
    """Stored bytes against the network's (θ_D as D float32s), and their ratio."""
    network_bytes = D * BYTES_PER_WEIGHT
    return {M.MODEL_BYTES: file_bytes, M.NETWORK_BYTES: network_bytes, M.COMPRESSION: network_bytes / file_bytes}
