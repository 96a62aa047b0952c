"""`idlab train`, as a researcher types it."""

import json
import os
import subprocess
import sys

import pytest


def idlab(*args, data_dir, timeout=600):
    env = {**os.environ, "IDLAB_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "idlab.launchers.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_mnist_fc_fastfood_d750_one_epoch_learns(mnist_dir):
    done = idlab("train", "--dataset", "mnist", "--model", "fc", "--projection", "fastfood", "--d", "750",
                 "--augmentation", "linear", "--epochs", "1", "--json", data_dir=mnist_dir)
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout.strip().splitlines()[-1])
    assert final["status"] == "succeeded"
    assert (final["D"], final["d"], final["k"]) == (199_210, 750, 750)
    assert final["test_acc"] > 0.3          # chance is 0.1; one epoch at lr 1e-3 gives ≈ 0.40
    assert final["test_loss"] > 0 and final["seconds"] > 0


def test_config_file_with_flag_overrides(tmp_path, mnist_dir):
    config = tmp_path / "run.yaml"
    config.write_text("dataset: synthetic\nmodel: fc\nfc_widths: [16]\nd: 10\nepochs: 3\ntrain_size: 128\n"
                      "test_size: 64\naugmentation: power\n")
    stats = tmp_path / "stats.json"
    done = idlab("train", "--config", str(config), "--epochs", "1", "--power-orders", "2",
                 "--power_coefs", "0.5", "--stats-out", str(stats), "--json", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout.strip().splitlines()[-1])
    assert final["epochs"] == 1 and final["k"] == 20
    written = json.loads(stats.read_text())
    assert written["config"]["power_orders"] == [2]
    assert set(written["statistics"]["P"]) == {"linear", "power_2"}


def test_from_run_follow_up_uses_the_trained_statistics(tmp_path):
    common = ["--dataset", "synthetic", "--fc_widths", "16", "--d", "10", "--epochs", "1", "--train_size", "128",
              "--test_size", "64", "--projection", "dense", "--normalize_p", "none", "--p_scale", "0.05", "--json"]
    stats = tmp_path / "trained.json"
    first = idlab("train", *common, "--train_p", "--stats-out", str(stats), data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    missing = idlab("train", *common, "--p_init", "from_run:1", data_dir=tmp_path)
    assert missing.returncode == 2 and "--from-run-stats" in missing.stderr
    follow_up = idlab("train", *common, "--p_init", "from_run:1", "--from-run-stats", str(stats), data_dir=tmp_path)
    assert follow_up.returncode == 0, follow_up.stderr


@pytest.mark.parametrize("args,field", [(["--d", "0"], "d"), (["--projection", "fastfood", "--train_p"], "train_p"),
                                        (["--projection", "warp"], "projection")])
def test_invalid_flags_name_the_field(tmp_path, args, field):
    done = idlab("train", *args, data_dir=tmp_path)
    assert done.returncode == 2
    assert f"  {field}: " in done.stderr


@pytest.mark.parametrize("args,field", [(["--lr", "nan"], "lr"), (["--p_scale", "inf"], "p_scale"),
                                        (["--rff_scale", "Infinity"], "rff_scale")])
def test_nan_and_inf_flags_are_refused_by_the_schema(tmp_path, args, field):
    done = idlab("train", "--dataset", "synthetic", *args, data_dir=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"  {field}: Input should be a finite number" in done.stderr


def test_missing_dataset_says_where_to_put_it(tmp_path):
    done = idlab("train", "--dataset", "mnist", data_dir=tmp_path / "empty")
    assert done.returncode == 2
    assert "empty" in done.stderr and "MNIST" in done.stderr
