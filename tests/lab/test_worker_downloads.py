"""A real `idlab worker` on an empty data directory: the run downloads MNIST from a local mirror on
first use, shows it as its phase, and fails with what to do when no mirror serves it (then a retry
succeeds). The mirror is python's http.server on 127.0.0.1 with copies of the real archives, sending
them slowly enough for the download to be seen; the first mirror of the setting is a closed port."""

from __future__ import annotations

import shutil
import threading

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.domain.models import FAILED, FINISHED, SUCCEEDED
from idlab import metrics as M
from idlab.dataset_files import CATALOG
from tests.lab.lab_processes import open_lab, wait_for
from tests.local_mirror import copy_mnist, serve
from worker.recorder import RunRecorder

pytestmark = pytest.mark.timeout(300)

MNIST_RUN = dict(dataset="mnist", train_size=256, test_size=128, epochs=1)
CLOSED = "http://127.0.0.1:9/"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """An empty mirror folder (mnist/ is added by the tests) served slowly: about 3 s for MNIST's 11 MB."""
    folder = tmp_path_factory.mktemp("mirror")
    with serve(folder, pause=0.015) as url:
        yield folder, url


@pytest.fixture(scope="module")
def lab(tmp_path_factory, mirror):
    _, url = mirror
    with pytest.MonkeyPatch.context() as patch, open_lab("embedded", tmp_path_factory.mktemp("embedded")) as lab:
        patch.setenv("IDLAB_DATASET_MIRRORS", f"{CLOSED},{url}")   # what the worker's settings read
        lab.worker = lab.start_worker("downloads")
        yield lab


def test_with_no_mirror_serving_the_run_fails_naming_the_files_and_folder_and_a_retry_succeeds(lab, mirror, mnist_dir):
    folder, url = mirror
    run_id = lab.create_run(**MNIST_RUN)

    run = lab.wait_finished(run_id, timeout=120)

    raw = (lab.data_dir / "MNIST" / "raw").resolve()
    assert run.status == FAILED, lab.describe(run_id)
    assert f"{CLOSED}mnist/train-images-idx3-ubyte.gz: unreachable" in run.error
    assert f"{url}mnist/train-images-idx3-ubyte.gz: HTTP 404" in run.error
    assert f"Put the files {CATALOG['mnist'].expected_names()} in {raw} " in run.error

    copy_mnist(mnist_dir, folder)                    # the mirror is back
    with TestClient(create_app(lab.settings)) as client:
        assert client.post(f"/api/runs/{run_id}/retry").status_code == 200
    run = lab.wait_finished(run_id, timeout=120)
    assert run.status == SUCCEEDED, lab.describe(run_id)
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{name}.gz" for name in CATALOG["mnist"].file_names)


def test_a_run_shows_its_download_as_its_phase_with_the_bytes_done(lab, mirror, mnist_dir):
    folder, _ = mirror
    copy_mnist(mnist_dir, folder)
    shutil.rmtree(lab.data_dir / "MNIST", ignore_errors=True)      # an empty data directory again
    run_id = lab.create_run(**MNIST_RUN)
    seen = []

    def finished():
        run = lab.run(run_id)
        if (run.progress or {}).get(M.DOWNLOAD):
            seen.append((run.progress["phase"], run.progress[M.DOWNLOAD]))
        return run.status in FINISHED and run

    run = wait_for(finished, 120, f"run {run_id} to finish", interval=0.05)

    assert run.status == SUCCEEDED, lab.describe(run_id)
    assert seen, "the heartbeats carried the download's progress while it ran (about 3 s)"
    served = sum(p.stat().st_size for p in (folder / "mnist").iterdir())
    assert any(phase == M.DOWNLOADING and 0 <= d["done"] < d["total"] for phase, d in seen), seen
    # Each file counts with its public size until the mirror announces its own (these copies were
    # recompressed), so the total moves from the public sum towards the mirror's as files start.
    low, high = sorted((served, CATALOG["mnist"].served_bytes))
    assert all(low <= d["total"] <= high for _, d in seen), seen
    assert M.DOWNLOAD not in run.progress, "training replaced the download in the progress"


def test_the_recorder_reports_a_download_then_gives_the_phase_back():
    recorder = RunRecorder(sessions=None, run_id=1, token="t", shutdown=threading.Event())
    recorder.enter_phase(M.PREPARING)
    recorder.download_progress(0, None)
    assert recorder.progress() == {"phase": M.DOWNLOADING, M.DOWNLOAD: {"done": 0, "total": None}}
    recorder.download_progress(4_000_000, 11_594_722)
    assert recorder.progress() == {"phase": M.DOWNLOADING, M.DOWNLOAD: {"done": 4_000_000, "total": 11_594_722}}
    recorder.download_progress(11_594_722, 11_594_722)
    assert recorder.progress()["phase"] == M.PREPARING, "every byte in: reading the files, building the network"
    recorder.enter_phase(M.TRAINING)
    assert recorder.progress() == {"phase": M.TRAINING}
