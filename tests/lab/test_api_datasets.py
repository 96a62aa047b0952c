"""GET /api/datasets: what the new-run form shows beside the dataset select, without loading torch."""

from __future__ import annotations

import os
import subprocess
import sys

from fastapi.testclient import TestClient

from backend.api.app import create_app
from idlab.config import DATASETS
from idlab.dataset_files import CATALOG

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_api_lists_every_dataset_with_its_files_state(client, settings, mnist_dir):
    answer = client.get("/api/datasets")
    assert answer.status_code == 200
    datasets = {d["name"]: d for d in answer.json()}
    assert list(datasets) == list(DATASETS), "every dataset a run config may name, in the schema's order"
    assert datasets["synthetic"]["state"] == "generated" and datasets["synthetic"]["folder"] is None
    cifar = datasets["cifar10"]
    assert cifar["state"] == "missing" and cifar["download_on_first_use"] is True
    assert cifar["folder"] == str((settings.data_dir / "cifar-10-batches-py").resolve())
    assert cifar["missing_files"] == CATALOG["cifar10"].file_names
    assert cifar["download_bytes"] == 170_498_071
    assert cifar["mirrors"] == ["http://127.0.0.1:9/cifar10/"], "the setting's mirrors (tests/conftest.py's)"

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "MNIST").symlink_to(mnist_dir / "MNIST")
    mnist = next(d for d in client.get("/api/datasets").json() if d["name"] == "mnist")
    assert (mnist["state"], mnist["missing_files"], mnist["download_on_first_use"]) == ("present", [], False)


def test_with_downloads_off_a_missing_dataset_is_not_promised(settings):
    offline = settings.model_copy(update={"allow_download": False})
    with TestClient(create_app(offline)) as client:
        fashion = next(d for d in client.get("/api/datasets").json() if d["name"] == "fashion_mnist")
    assert (fashion["state"], fashion["download_on_first_use"]) == ("missing", False)


def test_listing_the_datasets_imports_no_torch(tmp_path):
    code = ("import sys; from fastapi.testclient import TestClient; from backend.api.app import create_app; "
            "from backend.domain.settings import Settings; "
            f"s = Settings(_env_file=None, data_dir={str(tmp_path)!r}, allowed_hosts=['testserver']); "
            "c = TestClient(create_app(s)); c.__enter__(); r = c.get('/api/datasets'); "
            "assert r.status_code == 200, r.text; assert len(r.json()) == 4; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    env = {**os.environ, "PYTHONPATH": REPO}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
