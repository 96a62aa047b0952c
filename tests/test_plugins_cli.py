"""`idlab plugins`: what this environment offers, built-ins and plugins with their package; exit 1 when an entry
point could not be registered. Run as a process with the example package (pip-installed into a folder of its
own) and a broken distribution on its PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.plugin_packages import install_example, write_distribution


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    return install_example(tmp_path_factory.mktemp("plugins") / "site")


def idlab_plugins(*args: str, path: list) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    return subprocess.run([sys.executable, "-m", "idlab.launchers.cli", "plugins", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_it_lists_the_built_ins_and_the_plugins_with_their_package_and_version(example_site):
    listed = idlab_plugins(path=[example_site])

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "models:" and lines[1].split()[:3] == ["fc", "built", "in"]
    assert any(line.split()[:3] == ["residual_cnn", "idlab-plugin-example", "0.1.0"] for line in lines)
    assert any(line.split()[:3] == ["wine", "idlab-plugin-example", "0.1.0"] for line in lines)
    as_json = json.loads(idlab_plugins("--json", path=[example_site]).stdout)
    assert [m["name"] for m in as_json["models"]] == ["fc", "lenet", "residual_cnn"]
    assert as_json["datasets"][-1]["input_shape"] == [13, 1, 1]


def test_a_broken_plugin_is_reported_and_the_command_exits_1(example_site, tmp_path):
    broken = write_distribution(tmp_path / "broken", "broken-plugin", "1.2",
                                {"idlab.models": {"lost": "plugin_fixture_nowhere:spec"}})

    listed = idlab_plugins(path=[example_site, broken])

    assert listed.returncode == 1
    assert "residual_cnn" in listed.stdout, "the good plugins are still listed"
    assert "not registered: idlab.models 'lost' from broken-plugin 1.2: loading plugin_fixture_nowhere:spec " \
           "failed: ModuleNotFoundError" in listed.stderr
