"""/api/config/presets: the paper presets as idlab.presets defines them, each accepted by the experiments
endpoint's dry run, and the template filled from a run with trained P."""

from __future__ import annotations

import json

from backend.domain.models import SUCCEEDED, RunArtifact
from idlab import presets
from tests.lab.test_api_experiments import stored_counts
from tests.lab.test_api_runs import finish

TEMPLATE = "lam-lee-p-from-trained"


def trained_p_run(client, sessions, status: str | None = SUCCEEDED, **overrides) -> int:
    """A run of the 'trained P' preset (power, d = 50), stored and, unless status is None, finished."""
    request = presets.fill(presets.get("lam-lee-trained-p"))
    config = presets.single_run(request, {"augmentation": "power", "d": 50, **overrides})
    response = client.post("/api/runs", json=config)
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    if status is not None:
        finish(sessions, run_id, status)
    if status == SUCCEEDED:
        store_statistics(sessions, run_id)
    return run_id


def store_statistics(sessions, run_id: int) -> None:
    """What the worker records of a run's P (its "statistics" artefact), which p_init from_run:<id> samples from."""
    block = {"mean": 0.0, "std": 0.05, "counts": [1], "edges": [-1.0, 1.0]}
    with sessions() as session:
        session.add(RunArtifact(run_id=run_id, name="statistics",
                                data={"P": {name: {"initial": block, "trained": block}
                                            for name in ("linear", "power_2", "power_3")}}))
        session.commit()


def test_the_presets_are_those_of_idlab(client):
    response = client.get("/api/config/presets")
    assert response.status_code == 200
    served = response.json()
    assert served == [json.loads(json.dumps(p.as_json())) for p in presets.PRESETS]
    li = {p["id"]: p for p in served}["li-mnist-fc"]
    assert li["request"]["baseline"] == 1.0 and li["published"]["d_int90"] == 750 and li["parameters"] == []
    template = {p["id"]: p for p in served}[TEMPLATE]
    assert [p["name"] for p in template["parameters"]] == ["run_id"]
    assert client.get("/api/config/presets/li-mnist-fc").json() == li
    unknown = client.get("/api/config/presets/no-such-preset")
    assert unknown.status_code == 404 and "li-mnist-fc" in unknown.json()["detail"]


def test_every_preset_passes_the_dry_run(client, sessions):
    source = trained_p_run(client, sessions)
    before = stored_counts(sessions)
    for preset in presets.PRESETS:
        query = {"run_id": source} if preset.is_template else {}
        filled = client.get(f"/api/config/presets/{preset.id}", params=query).json()
        assert filled["parameters"] == []
        response = client.post("/api/experiments", params={"dry_run": "true"}, json=filled["request"])
        assert response.status_code == 200, (preset.id, response.text)
        plan = response.json()
        assert plan["run_count"] == filled["run_count"] == presets.run_count(filled["request"]), preset.id
        assert plan["baseline_count"] == 0 and plan["warnings"] == [], preset.id
    assert stored_counts(sessions) == before, "a dry run stores nothing"


def test_the_template_is_filled_from_the_source_run(client, sessions):
    source = trained_p_run(client, sessions)
    filled = client.get(f"/api/config/presets/{TEMPLATE}", params={"run_id": source})
    assert filled.status_code == 200, filled.text
    base = filled.json()["request"]["base"]
    assert base["p_init"] == f"from_run:{source}" and base["augmentation"] == "power"
    assert base["train_p"] is False and base["normalize_p"] == "none"
    created = client.post("/api/experiments", json=filled.json()["request"])
    assert created.status_code == 201, created.text
    assert len(created.json()["run_ids"]) == presets.run_count(filled.json()["request"])


def test_the_template_refuses_a_source_without_trained_p(client, sessions):
    def refusal(run_id) -> str:
        response = client.get(f"/api/config/presets/{TEMPLATE}", params={"run_id": run_id})
        assert response.status_code == 422, response.text
        (problem,) = response.json()["detail"]
        assert problem["loc"] == ["query", "run_id"]
        return problem["msg"]

    assert "did not train P" in refusal(trained_p_run(client, sessions, train_p=False))
    assert "queued" in refusal(trained_p_run(client, sessions, status=None))
    assert client.get(f"/api/config/presets/{TEMPLATE}", params={"run_id": 10**6}).status_code == 404
    refused = client.get("/api/config/presets/lam-lee", params={"run_id": 1})
    assert "not a template" in refused.json()["detail"][0]["msg"]
