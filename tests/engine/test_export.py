"""A trained subspace run as a model file: it rebuilds the same network from the seed and reproduces
the run's test accuracy; a changed file or a changed engine is refused, never evaluated as another network."""

import json

import pytest
import torch

from idlab.config import RunConfig
from worker.subspace import export
from worker.subspace import network as network_module
from worker.subspace.batched import train_batch
from worker.subspace.data import load_dataset
from worker.subspace.export import ModelFileError, evaluate_file, export_bytes, load, read_header
from worker.subspace.network import build_network
from worker.subspace.training import train

TINY = dict(dataset="synthetic", model="fc", fc_widths=[32], d=40, lr=0.05, epochs=2, batch_size=64,
            train_size=640, test_size=256, device="cpu")


def trained(**fields):
    config = RunConfig(**{**TINY, **fields})
    splits = load_dataset(config, None)
    return config, splits, train(config, splits)


@pytest.mark.parametrize("fields", [dict(), dict(projection="dense", train_p=True),
                                    dict(augmentation="rff", train_rff_b=True), dict(projection="sparse", seed=3)],
                         ids=["fastfood", "trained-dense-P", "trained-B", "sparse"])
def test_a_model_file_reproduces_the_runs_test_accuracy_exactly(fields):
    config, splits, result = trained(**fields)

    evaluation = evaluate_file(result.model, splits.test_x, splits.test_y)

    assert result.status == "succeeded" and result.model is not None
    assert result.metrics["model_bytes"] == len(result.model) and result.metrics["network_bytes"] == config.D * 4
    assert result.metrics["compression"] == pytest.approx(config.D * 4 / len(result.model))
    assert evaluation.test_acc == result.metrics["test_acc"] == evaluation.exported_test_acc
    assert evaluation.test_loss == pytest.approx(result.metrics["test_loss"], rel=1e-6)
    header, _ = read_header(result.model)
    trained_names = {spec["name"] for spec in header["tensors"]}
    assert trained_names == {"theta_d"} | ({"P.P"} if config.train_p else set()) | (
        {"phi.B"} if config.train_rff_b else set())


def test_a_batched_run_exports_the_same_model_as_alone():
    configs = [RunConfig(**{**TINY, "seed": seed, "d": d}) for seed, d in ((0, 40), (1, 24))]
    splits = load_dataset(configs[0], None)
    together = train_batch(configs, splits)
    for config, result in zip(configs, together, strict=True):
        alone = train(config, splits)
        assert evaluate_file(result.model, splits.test_x, splits.test_y).test_acc == alone.metrics["test_acc"]


def test_mnist_fc_at_d_750_is_kilobytes_against_the_networks_800_kb():
    config = RunConfig(dataset="mnist", model="fc", d=750, device="cpu")
    torch.manual_seed(config.seed)
    data = export_bytes(config, build_network(config))

    sizes = export.sizes(config, len(data))
    assert sizes["network_bytes"] == 199_210 * 4
    assert len(data) < 8_000 and sizes["compression"] > 100, sizes    # 3,000 bytes of θ_d and the config


def test_a_file_changed_after_export_is_refused():
    _, splits, result = trained()
    data = bytearray(result.model)
    data[-5] ^= 0x01                                    # one bit of θ_d

    with pytest.raises(ModelFileError, match="checksum does not match"):
        evaluate_file(bytes(data), splits.test_x, splits.test_y)
    with pytest.raises(ModelFileError, match="not an idlab model file"):
        load(b"PK\x03\x04 a zip file")


def rewritten(data: bytes, change) -> bytes:
    """The file with its header changed by `change` and its checksum made to match again."""
    header, payload = read_header(data)
    change(header)
    header["sha256"] = export.digest(header, payload)
    return export.MAGIC + json.dumps(header).encode() + b"\n" + payload


def test_a_file_of_another_format_or_another_seed_is_refused():
    _, _, result = trained()

    with pytest.raises(ModelFileError, match="format 2, but this lab reads format 1"):
        load(rewritten(result.model, lambda header: header.update(format=2)))
    with pytest.raises(ModelFileError, match="θ_0 .* differs from the exported network"):
        load(rewritten(result.model, lambda header: header["config"].update(seed=7)))


def test_an_engine_that_draws_theta_0_differently_is_refused(monkeypatch):
    _, _, result = trained()
    drawn = network_module.initial_theta
    monkeypatch.setattr(network_module, "initial_theta", lambda config, generator: drawn(config, generator) * 1.01)

    with pytest.raises(ModelFileError, match="this engine draws it differently"):
        load(result.model)


def test_a_direct_run_has_no_model_file():
    _, _, result = trained(method="direct")
    assert result.model is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("trained_on", "evaluated_on"), [("cpu", "cuda"), ("cuda", "cpu"), ("cuda", "cuda")])
def test_a_model_file_evaluates_alike_on_cpu_and_cuda(trained_on, evaluated_on):
    """Exactly on the device it trained on; within 1e-4 across devices (a rounding, never another network)."""
    config, splits, result = trained(device=trained_on, test_size=2048)

    evaluation = evaluate_file(result.model, splits.test_x, splits.test_y, evaluated_on)

    assert evaluation.device.startswith(evaluated_on)
    if trained_on == evaluated_on:
        assert evaluation.test_acc == result.metrics["test_acc"]
    assert abs(evaluation.test_acc - result.metrics["test_acc"]) <= 1e-4
    assert evaluation.test_loss == pytest.approx(result.metrics["test_loss"], rel=1e-4)
