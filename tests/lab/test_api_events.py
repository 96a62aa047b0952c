"""Server-Sent Events on a real uvicorn server: live points, resuming, the end of a run; experiments."""

from __future__ import annotations

import time

import httpx
import pytest

from backend.domain import lifecycle
from backend.domain.models import SUCCEEDED
from backend.domain.points import write_points
from tests.lab.conftest import EventReader

TIMEOUT = httpx.Timeout(10.0)
SMALL = {"dataset": "synthetic", "d": 20, "epochs": 1}


def write(sessions, run_id: int, points) -> None:
    with sessions() as session:
        write_points(session, run_id, points)
        session.commit()


def test_run_stream_delivers_new_points_resumes_and_ends(live_server, sessions):
    with httpx.Client(base_url=live_server, timeout=TIMEOUT) as http:
        run_id = http.post("/api/runs", json=SMALL).json()["id"]
        with sessions() as session:
            token = lifecycle.claim(session, run_id, "test-worker")

        with http.stream("GET", f"/api/runs/{run_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = EventReader(response)
            first = events.next()
            assert first["event"] == "status" and first["data"]["status"] == "running"
            assert first["retry"] == "1000"

            write(sessions, run_id, [("train_loss", step, 0, 2.0 - step / 10) for step in range(3)])
            batch = events.until("points")[-1]
            assert [(p["key"], p["step"], p["value"]) for p in batch["data"]] == [
                ("train_loss", 0, 2.0), ("train_loss", 1, 1.9), ("train_loss", 2, 1.8)]
            assert batch["id"] == str(max(p["id"] for p in batch["data"]))
            resume_from = batch["id"]

        # Disconnected: points keep arriving, and one already sent is overwritten (a restart).
        write(sessions, run_id, [("train_loss", 3, 0, 1.7), ("test_acc", 3, 0, 0.8), ("train_loss", 1, 0, 5.0)])
        # As a browser reconnects: its first URL (from the start) and the header with the latest id.
        with http.stream("GET", f"/api/runs/{run_id}/events", params={"last_event_id": 0},
                         headers={"Last-Event-ID": resume_from}) as response:
            events = EventReader(response)
            assert events.next()["event"] == "status"
            received = events.until("points")[-1]["data"]
            assert sorted((p["key"], p["step"], p["value"]) for p in received) == [
                ("test_acc", 3, 0.8), ("train_loss", 1, 5.0), ("train_loss", 3, 1.7)]   # nothing repeated
            assert all(p["id"] > int(resume_from) for p in received)

            with sessions() as session:
                lifecycle.finish(session, run_id, token, SUCCEEDED, metrics={"test_acc": 0.8})
            tail = events.until("end")
            assert [e["event"] for e in tail] == ["status", "end"]
            assert tail[0]["data"]["status"] == "succeeded" and tail[0]["data"]["final_metrics"] == {"test_acc": 0.8}
            assert tail[1]["data"] == {"status": "succeeded"}
            with pytest.raises(EOFError):
                events.next()                                               # the server closed the stream

        # A finished run replays from the query's last_event_id, then ends at once.
        with http.stream("GET", f"/api/runs/{run_id}/events", params={"last_event_id": 0}) as response:
            replay = EventReader(response).until("end")
            points = [p for e in replay if e["event"] == "points" for p in e["data"]]
            assert len(points) == 5 and [e["event"] for e in replay][-1] == "end"


def test_run_stream_sends_keepalives_and_notices_disconnects(live_server, sessions):
    with httpx.Client(base_url=live_server, timeout=TIMEOUT) as http:
        run_id = http.post("/api/runs", json=SMALL).json()["id"]
        with http.stream("GET", f"/api/runs/{run_id}/events") as response:
            lines = response.iter_lines()
            started = time.monotonic()
            comments = []
            for line in lines:
                if line.startswith(":"):
                    comments.append(line)
                    break
            assert comments and time.monotonic() - started < 5                # ping every sse_ping_seconds (1 s)
            assert http.get("/api/health").json()["open_streams"] == 1
        deadline = time.monotonic() + 5
        while http.get("/api/health").json()["open_streams"] != 0:             # the client left: polling stops
            assert time.monotonic() < deadline, "the stream kept running after its client disconnected"
            time.sleep(0.05)


def test_experiment_stream_reports_status_changes(live_server):
    with httpx.Client(base_url=live_server, timeout=TIMEOUT) as http:
        experiment = http.post("/api/experiments", json={"name": "live", "base": SMALL, "grid": {"d": [10, 20]}}).json()
        first_id, second_id = experiment["run_ids"]
        with http.stream("GET", f"/api/experiments/{experiment['id']}/events") as response:
            events = EventReader(response)
            snapshot = events.next()
            assert snapshot["event"] == "status"
            assert {(r["id"], r["status"]) for r in snapshot["data"]} == {(first_id, "queued"), (second_id, "queued")}

            http.post(f"/api/runs/{first_id}/cancel")
            change = events.next()
            assert [(r["id"], r["status"]) for r in change["data"]] == [(first_id, "cancelled")]   # only what changed

            http.post(f"/api/runs/{second_id}/cancel")
            tail = events.until("end")
            assert [(r["id"], r["status"]) for r in tail[0]["data"]] == [(second_id, "cancelled")]
            assert tail[-1]["data"] == {"runs": 2}
