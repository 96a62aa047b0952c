"""A trained subspace run as a small file: its config and the tensors it trained, nothing else.

    θ_D = θ_0 + P·φ(θ_d)

θ_0, P and φ's random matrices are drawn from the run's seed (`network.SubspaceNetwork`), so a
run is fully described by its config and what training changed: θ_d, and P or B where they were
trained. For MNIST-FC (D = 199,210) at d = 750 that is 750 floats (3 KB) plus the config and a
probe (a file of 4.8 KB), against 797 KB for θ_D itself — the description length that d_int90 bounds
(Li et al. 2018, §5).

File (format 1, read without torch by `idlab.model_file`): the line `idlab-subspace-model`, one
line of JSON (the header), then the tensors' float32 bytes, little-endian, in the header's order. The header holds

    format, torch       the file's format, and the torch that wrote it (for the message only)
    config              the run config, as stored
    from_run_stats      the per-block law P was drawn from (p_init from_run:<id>), else null
    tensors             [{name, shape}] of the trained parameters (`named_parameters`)
    probe               θ_0 and θ_D at PROBE_ROWS fixed rows, and ‖θ_D‖, as exported
    metrics             the run's final metrics (test_acc, test_loss, …)
    sha256              of the header without this field, then of the tensor bytes

Loading rebuilds θ_0, P and φ from the seed, sets the trained tensors and compares the probe:
a file changed after export (sha256), a file of another format, or an engine that now draws
θ_0 or P differently (the probe moves) is refused with a message that says which — never
silently evaluated as another network. The probe's tolerance, 1e-4 relative, admits the
rounding of another device (CPU against CUDA) and nothing a different draw could produce.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from idlab import model_file
from idlab.config import RunConfig
from idlab.model_file import BYTES_PER_WEIGHT, FORMAT, MAGIC, ModelFileError, digest, read_header  # noqa: F401
from worker.subspace.network import SubspaceNetwork, build_network
from worker.subspace.training import evaluate, resolve_device

PROBE_ROWS = 16
PROBE_TOLERANCE = 1e-4
#: The most a model file holds: θ_d is kilobytes, but a trained dense P is D×k floats.
MAX_TRAINED_BYTES = 64 * 2**20


@dataclass
class Evaluation:
    test_acc: float
    test_loss: float
    exported_test_acc: float | None
    device: str


def probe_rows(D: int) -> Tensor:
    """PROBE_ROWS rows of θ_D spread over every layer (the same for a given D)."""
    return torch.linspace(0, D - 1, min(PROBE_ROWS, D)).round().long()


def probe(network: SubspaceNetwork) -> dict:
    """θ_0 and θ_D at the probe rows, and ‖θ_D‖: what a rebuilt network must reproduce."""
    with torch.no_grad():
        theta_D = network.theta_D().float().cpu()
    theta_0 = network.theta_0.float().cpu()
    rows = probe_rows(len(theta_D))
    return {"theta_0": theta_0[rows].tolist(), "theta_D": theta_D[rows].tolist(), "norm": theta_D.norm().item()}


def trained_tensors(network: SubspaceNetwork) -> dict[str, Tensor]:
    """What training changed: every trainable parameter (θ_d; P with train_p; B with train_rff_b)."""
    return {name: p.detach().float().cpu().contiguous() for name, p in network.named_parameters() if p.requires_grad}


def export_bytes(config: RunConfig, network: SubspaceNetwork, metrics: dict | None = None,
                 from_run_stats: dict | None = None) -> bytes:
    """The file of a trained subspace run (its network after training)."""
    if config.method != "subspace":
        raise ModelFileError("only subspace runs export as a model file: a direct run is all of its D weights")
    tensors = trained_tensors(network)
    if (size := sum(t.numel() for t in tensors.values()) * BYTES_PER_WEIGHT) > MAX_TRAINED_BYTES:
        raise ModelFileError(f"the trained tensors take {size / 2**20:,.0f} MiB (a trained dense P is D×k floats), "
                             f"over the {MAX_TRAINED_BYTES / 2**20:,.0f} MiB a model file may hold")
    payload = b"".join(t.numpy().astype("<f4").tobytes() for t in tensors.values())
    header = {"format": FORMAT, "torch": torch.__version__, "config": config.model_dump(mode="json"),
              "from_run_stats": from_run_stats,
              "tensors": [{"name": n, "shape": list(t.shape)} for n, t in tensors.items()],
              "probe": probe(network), "metrics": _plain_metrics(metrics or {})}
    header["sha256"] = digest(header, payload)
    return MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload


def load(data: bytes, device: str | torch.device = "cpu") -> tuple[RunConfig, SubspaceNetwork, dict]:
    """Rebuild the exported network: θ_0, P and φ from the seed, the trained tensors from the file."""
    header, payload = read_header(data)
    try:
        config = RunConfig.model_validate(header["config"])
    except Exception as error:
        raise ModelFileError(f"the model file's config is not valid in this lab version: {error}") from error
    network = build_network(config, header.get("from_run_stats"))
    parameters = dict(network.named_parameters())
    offset = 0
    with torch.no_grad():
        for spec in header["tensors"]:
            target = parameters.get(spec["name"])
            if target is None or list(target.shape) != spec["shape"]:
                raise ModelFileError(f"the model file holds {spec['name']} of shape {spec['shape']}, which this "
                                     "engine's network for its config does not have: the engine changed since export")
            size = math.prod(spec["shape"]) * BYTES_PER_WEIGHT
            values = torch.frombuffer(bytearray(payload[offset:offset + size]), dtype=torch.float32)
            target.copy_(values.view(spec["shape"]))
            offset += size
    if offset != len(payload):
        raise ModelFileError("the model file's tensors do not fill it exactly: the file is damaged")
    _check_probe(header["probe"], probe(network))
    return config, network.to(resolve_device(str(device))), header


def evaluate_file(data: bytes, test_x: Tensor, test_y: Tensor, device: str = "cpu") -> Evaluation:
    """The test accuracy and loss of the exported network on (test_x, test_y)."""
    config, network, header = load(data, device)
    target = next(network.parameters()).device
    test_loss, test_acc = evaluate(network, test_x.to(target), test_y.to(target))
    return Evaluation(test_acc, test_loss, header["metrics"].get("test_acc"), str(target))


def sizes(config: RunConfig, file_bytes: int) -> dict:
    """Stored bytes against the network's (θ_D as float32), and their ratio."""
    return model_file.sizes(config.D, file_bytes)


def read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def _check_probe(exported: dict, rebuilt: dict) -> None:
    for part, what in (("theta_0", "θ_0 (its initialisation)"), ("theta_D", "θ_D (P, φ or the trained tensors)")):
        a, b = torch.tensor(exported[part]), torch.tensor(rebuilt[part])
        tolerance = PROBE_TOLERANCE * a.abs().max().item()
        if a.shape != b.shape or not torch.allclose(a, b, rtol=PROBE_TOLERANCE, atol=tolerance):
            raise ModelFileError(f"rebuilt from its seed, {what} differs from the exported network: this engine draws "
                                 "it differently than the one that exported the file; evaluate it with that version, "
                                 "or train the run again here")
    if not math.isclose(exported["norm"], rebuilt["norm"], rel_tol=PROBE_TOLERANCE):
        raise ModelFileError("rebuilt from its seed, ‖θ_D‖ differs from the exported network's: the engine changed "
                             "since export")


def _plain_metrics(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}
