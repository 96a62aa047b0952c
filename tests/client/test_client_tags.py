"""Tags and notes through the client: tag, untag, set_tags, set_notes on runs and experiments, the tag
filters of runs() and experiments(), tags() for autocompletion, and the lab's refusals as exceptions."""

from __future__ import annotations

import pytest

from idlab.client import Lab, LabValidationError
from tests.client.conftest import TOKEN
from tests.lab.lab_processes import TINY

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def lab(served_lab):
    with Lab(served_lab.url, token=TOKEN, timeout=30) as client:
        yield client


def test_runs_are_tagged_untagged_and_found_by_their_tags(lab):
    first, second = (lab.submit_run(TINY, epochs=1, seed=seed) for seed in (0, 1))
    tagged = lab.tag(first, "paper:fig-3", "Baseline")
    assert tagged["tags"] == ["Baseline", "paper:fig-3"] and tagged["id"] == first["id"]
    lab.tag(second, "baseline", "sweep/lr")
    assert sorted(lab.runs(tag="BASELINE")["run_id"]) == sorted([first["id"], second["id"]])
    assert list(lab.runs(tag=["baseline", "sweep/lr"])["run_id"]) == [second["id"]]
    frame = lab.runs(tag="paper:fig-3").set_index("run_id")
    assert frame.loc[first["id"], "tags"] == ["Baseline", "paper:fig-3"]
    # A tag with a slash and one in another case are removed as given.
    assert lab.untag(second, "SWEEP/LR", "absent")["tags"] == ["baseline"]
    assert lab.set_tags(first, ["only"])["tags"] == ["only"]
    assert lab.run(first)["tags"] == ["only"]
    noted = lab.set_notes(first, "diverged at d=50\n- retry with lr 1e-4")
    assert lab.run(first)["notes"] == noted["notes"] == "diverged at d=50\n- retry with lr 1e-4"
    counts = lab.tags(prefix="base").set_index("tag")
    assert counts.loc["baseline", "runs"] == 1 and counts.loc["baseline", "experiments"] == 0


def test_experiments_are_tagged_and_noted(lab):
    sweep = lab.submit_experiment("tagged", base=dict(TINY, epochs=1), grid={"d": [10]}, seeds=[0])
    assert lab.tag(sweep, "ablation")["tags"] == ["ablation"]
    assert lab.set_notes(sweep, "one seed only")["notes"] == "one seed only"
    assert lab.experiment(sweep)["tags"] == ["ablation"]
    shown = lab.experiments(tag="Ablation")
    assert list(shown["experiment_id"]) == [sweep["id"]] and shown.iloc[0]["tags"] == ["ablation"]
    assert lab.experiments(tag=["ablation", "absent"]).empty
    assert lab.untag(sweep, "ablation")["tags"] == []


def test_bad_tags_are_refused_naming_what_to_fix(lab):
    run = lab.submit_run(TINY, epochs=1)
    with pytest.raises(LabValidationError) as refused:
        lab.set_tags(run, ["fine", "<b>bold</b>"])
    assert refused.value.fields == ["tags[1]"] and "cannot be in a tag" in str(refused.value)
    with pytest.raises(LabValidationError, match="at most 40"):
        lab.tag(run, "x" * 41)
    with pytest.raises(LabValidationError, match="at most 10000"):
        lab.set_notes(run, "x" * 10_001)
    with pytest.raises(TypeError, match=r"lab\.run\(id\)"):
        lab.tag(run["id"], "a")
    assert lab.run(run)["tags"] == []
