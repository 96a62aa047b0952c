"""Tags and notes of runs and experiments (PATCH, POST …/tags, DELETE …/tags/{tag}, `?tag=` on the lists,
GET /api/tags), on SQLite and Postgres: what is kept, what is refused and why, and what the filters find."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from backend.domain.models import ExperimentTag, RunTag
from tests.lab.test_api_delete_archive import TOKEN, experiment, listed
from tests.lab.test_api_runs import finish, make_run


def patch(client, path: str, **body) -> dict:
    response = client.patch(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def tag_rows(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


# ---- setting tags and notes ---------------------------------------------------------------------


def test_a_run_keeps_the_tags_and_notes_it_is_given(client):
    run = make_run(client)["id"]
    shown = client.get(f"/api/runs/{run}").json()
    assert (shown["tags"], shown["notes"]) == ([], "")
    answer = patch(client, f"/api/runs/{run}", tags=["  paper:fig-3 ", "Baseline", "baseline", "sweep/lr  1e-3"],
                   notes="# lr sweep\n\n<script>alert(1)</script> kept as text\n")
    # Trimmed, inner spaces made one, the repeat in another case counted once (first spelling), sorted by key.
    assert answer["tags"] == ["Baseline", "paper:fig-3", "sweep/lr 1e-3"]
    assert answer["notes"] == "# lr sweep\n\n<script>alert(1)</script> kept as text\n"
    again = client.get(f"/api/runs/{run}").json()
    assert (again["tags"], again["notes"], again["archived"]) == (answer["tags"], answer["notes"], False)
    # Fields left out stay; a new set replaces the old one, and a kept tag may change its spelling.
    assert patch(client, f"/api/runs/{run}", archived=True)["tags"] == answer["tags"]
    replaced = patch(client, f"/api/runs/{run}", tags=["BASELINE", "new"])
    assert (replaced["tags"], replaced["notes"], replaced["archived"]) == (["BASELINE", "new"], answer["notes"], True)
    cleared = patch(client, f"/api/runs/{run}", tags=[], notes="")
    assert (cleared["tags"], cleared["notes"]) == ([], "")


def test_an_experiment_keeps_its_tags_and_notes_and_its_runs_keep_theirs(client):
    sweep = experiment(client)
    answer = patch(client, f"/api/experiments/{sweep['id']}", tags=["ablation"], notes="seeds 0-1 only")
    assert (answer["tags"], answer["notes"], answer["run_count"]) == (["ablation"], "seeds 0-1 only", 4)
    shown = client.get(f"/api/experiments/{sweep['id']}").json()
    assert (shown["tags"], shown["notes"]) == (["ablation"], "seeds 0-1 only")
    assert client.get("/api/experiments").json()["items"][0]["tags"] == ["ablation"]
    assert all(client.get(f"/api/runs/{run}").json()["tags"] == [] for run in sweep["run_ids"])


def test_one_tag_is_added_and_removed_in_any_case(client):
    run = make_run(client)["id"]
    for tag in ("lr:1e-3", "LR:1E-3", "keep"):          # the second is the first in another case: no change
        response = client.post(f"/api/runs/{run}/tags", json={"tag": tag})
        assert response.status_code == 200, response.text
    assert response.json()["tags"] == ["keep", "lr:1e-3"]
    removed = client.delete(f"/api/runs/{run}/tags/LR%3A1e-3")
    assert removed.status_code == 200 and removed.json()["tags"] == ["keep"]
    # Removing a tag it does not have changes nothing (a retried DELETE is harmless).
    assert client.delete(f"/api/runs/{run}/tags/lr:1e-3").json()["tags"] == ["keep"]
    # A tag holding a slash travels in the path as it is, or encoded.
    client.post(f"/api/runs/{run}/tags", json={"tag": "sweep/lr"})
    assert client.delete(f"/api/runs/{run}/tags/sweep%2Flr").json()["tags"] == ["keep"]
    client.post(f"/api/runs/{run}/tags", json={"tag": "sweep/lr"})
    assert client.delete(f"/api/runs/{run}/tags/sweep/lr").json()["tags"] == ["keep"]
    sweep = experiment(client)["id"]
    assert client.post(f"/api/experiments/{sweep}/tags", json={"tag": "fig 2"}).json()["tags"] == ["fig 2"]
    assert client.delete(f"/api/experiments/{sweep}/tags/fig%202").json()["tags"] == []


def test_tags_go_with_their_run_and_experiment(client, sessions):
    run = make_run(client)["id"]
    finish(sessions, run)
    sweep = experiment(client)
    for member in sweep["run_ids"]:
        client.post(f"/api/runs/{member}/tags", json={"tag": "member"})
        client.post(f"/api/runs/{member}/cancel")
    patch(client, f"/api/runs/{run}", tags=["a", "b"])
    patch(client, f"/api/experiments/{sweep['id']}", tags=["sweep"])
    assert (tag_rows(sessions, RunTag), tag_rows(sessions, ExperimentTag)) == (6, 1)
    assert client.delete(f"/api/runs/{run}").status_code == 204
    assert tag_rows(sessions, RunTag) == 4
    assert client.delete(f"/api/experiments/{sweep['id']}").status_code == 204
    assert (tag_rows(sessions, RunTag), tag_rows(sessions, ExperimentTag)) == (0, 0)


# ---- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, where, words", [
    ({"tags": ["ok", "<b>"]}, ["body", "tags", 1], "'<', '>' cannot be in a tag"),
    ({"tags": ["   "]}, ["body", "tags", 0], "an empty tag"),
    ({"tags": ["x" * 41]}, ["body", "tags", 0], "at most 40"),
    ({"tags": "baseline"}, ["body", "tags"], "valid list"),
    ({"tags": [f"t{i}" for i in range(33)]}, ["body", "tags"], "33 tags: at most 32"),
    ({"notes": "x" * 10_001}, ["body", "notes"], "at most 10000"),
    ({"notes": "a\x00b"}, ["body", "notes"], "control character"),
    ({"notes": None}, ["body"], "notes cannot be null"),
    ({"tags": ["a"], "colour": "red"}, ["body", "colour"], "Extra"),
])
def test_invalid_tags_and_notes_are_refused_saying_what_to_fix(client, body, where, words):
    run = make_run(client)["id"]
    patch(client, f"/api/runs/{run}", tags=["kept"], notes="kept")
    for path in (f"/api/runs/{run}", f"/api/experiments/{experiment(client)['id']}"):
        response = client.patch(path, json=body)
        assert response.status_code == 422, response.text
        assert any(e["loc"] == where and words in e["msg"] for e in response.json()["detail"]), response.text
    kept = client.get(f"/api/runs/{run}").json()
    assert (kept["tags"], kept["notes"]) == (["kept"], "kept")


def test_single_tag_calls_are_checked(client):
    run = make_run(client)["id"]
    bad = client.post(f"/api/runs/{run}/tags", json={"tag": "a;b"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "tag"]
    bad_path = client.delete(f"/api/runs/{run}/tags/a%3Bb")
    assert bad_path.status_code == 422 and bad_path.json()["detail"][0]["loc"] == ["path", "tag"]
    patch(client, f"/api/runs/{run}", tags=[f"t{i}" for i in range(32)])
    full = client.post(f"/api/runs/{run}/tags", json={"tag": "one-more"})
    assert full.status_code == 422 and "remove one first" in full.json()["detail"][0]["msg"]
    assert client.post(f"/api/runs/{run}/tags", json={"tag": "T5"}).status_code == 200   # has it: no change
    assert client.post("/api/runs/999999/tags", json={"tag": "a"}).status_code == 404
    assert client.delete("/api/experiments/999999/tags/a").status_code == 404
    bad_filter = client.get("/api/runs", params={"tag": ["ok", "no<"]})
    assert bad_filter.status_code == 422 and bad_filter.json()["detail"][0]["loc"] == ["query", "tag"]


def test_changing_tags_and_notes_needs_the_token_when_one_is_set(client, settings):
    run = make_run(client)["id"]
    sweep = experiment(client)["id"]
    settings.api_token = TOKEN
    for method, path, body in [("PATCH", f"/api/runs/{run}", {"tags": ["a"]}),
                               ("PATCH", f"/api/experiments/{sweep}", {"notes": "a"}),
                               ("POST", f"/api/runs/{run}/tags", {"tag": "a"}),
                               ("POST", f"/api/experiments/{sweep}/tags", {"tag": "a"}),
                               ("DELETE", f"/api/runs/{run}/tags/a", None),
                               ("DELETE", f"/api/experiments/{sweep}/tags/a", None)]:
        assert client.request(method, path, json=body).status_code == 401, (method, path)
    assert client.get(f"/api/runs/{run}").json()["tags"] == []
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post(f"/api/runs/{run}/tags", json={"tag": "a"}, headers=authorized).json()["tags"] == ["a"]


# ---- filtering and counting --------------------------------------------------------------------


def test_the_lists_keep_what_holds_every_tag_asked_for(client):
    plain, fig, fig_base = (make_run(client)["id"] for _ in range(3))
    patch(client, f"/api/runs/{fig}", tags=["Fig-3"])
    patch(client, f"/api/runs/{fig_base}", tags=["fig-3", "baseline"])
    assert listed(client, "/api/runs", tag="fig-3") == [fig_base, fig]
    assert listed(client, "/api/runs", tag="FIG-3") == [fig_base, fig]        # in any case
    assert listed(client, "/api/runs", tag=["fig-3", "baseline"]) == [fig_base]  # all of them
    assert listed(client, "/api/runs", tag=["baseline", "absent"]) == []
    assert client.get("/api/runs", params={"tag": "fig-3", "limit": 1}).json()["total"] == 2
    assert plain in listed(client, "/api/runs")
    # Archived runs hide as before; archived=all finds them by tag too.
    patch(client, f"/api/runs/{fig}", archived=True)
    assert listed(client, "/api/runs", tag="fig-3") == [fig_base]
    assert listed(client, "/api/runs", tag="fig-3", archived="all") == [fig_base, fig]
    first, second = experiment(client)["id"], experiment(client)["id"]
    patch(client, f"/api/experiments/{first}", tags=["ablation", "v2"])
    patch(client, f"/api/experiments/{second}", tags=["ablation"])
    assert listed(client, "/api/experiments", tag="Ablation") == [second, first]
    assert listed(client, "/api/experiments", tag=["ablation", "v2"]) == [first]
    assert client.get("/api/experiments", params={"tag": "v2"}).json()["total"] == 1


def test_the_tags_in_use_are_counted_for_autocompletion(client):
    runs = [make_run(client)["id"] for _ in range(3)]
    for run, tags in zip(runs, (["baseline", "fig-3"], ["Baseline"], ["baseline", "figure"]), strict=True):
        patch(client, f"/api/runs/{run}", tags=tags)
    patch(client, f"/api/experiments/{experiment(client)['id']}", tags=["fig-3"])
    items = client.get("/api/tags").json()["items"]
    assert items == [{"tag": "baseline", "runs": 3, "experiments": 0},
                     {"tag": "fig-3", "runs": 1, "experiments": 1},
                     {"tag": "figure", "runs": 1, "experiments": 0}]
    assert [i["tag"] for i in client.get("/api/tags", params={"prefix": "FIG"}).json()["items"]] == ["fig-3", "figure"]
    assert client.get("/api/tags", params={"prefix": "fig", "limit": 1}).json()["items"][0]["tag"] == "fig-3"
    # A prefix is matched as text: % and _ are no wildcards.
    assert client.get("/api/tags", params={"prefix": "%"}).json()["items"] == []
