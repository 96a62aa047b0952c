"""A Python client of the lab's HTTP API, for notebooks and scripts.

    from idlab.client import Lab

    lab = Lab("http://127.0.0.1:8000")            # token="…" when the lab sets IDLAB_API_TOKEN
    run = lab.submit_run(dataset="mnist", model="fc", projection="fastfood", d=750, epochs=5)
    run = lab.wait(run)                            # a progress bar until it has finished
    run["status"], run["final_metrics"]["test_acc"]
    curves = lab.metrics(run)                      # DataFrame: step, key, value, epoch

    sweep = lab.submit_experiment("linear vs rff", base={"dataset": "mnist", "epochs": 5},
                                  grid={"augmentation": ["linear", "rff"], "d": [100, 300, 1000]},
                                  seeds=[0, 1, 2], baseline=True)
    lab.wait(sweep)
    lab.summary(sweep)      # one row per group × d: mean, std, n, d_int90 and its interval, baseline, threshold
    lab.export(sweep)       # one row per run: config.<field>, final.<metric>
    lab.runs(experiment_id=sweep["id"], status="failed")
    lab.archive(sweep)      # hidden from the lists (lab.runs(archived="all") shows it); lab.unarchive(sweep)
    lab.tag(run, "baseline", "paper:fig-3")        # runs and experiments alike; lab.untag(run, "baseline")
    lab.set_notes(sweep, "lr 1e-3 diverged at d=50")
    lab.runs(tag=["paper:fig-3"])                  # the runs holding every tag given (in any case)
    lab.delete_experiment(sweep)                   # with its runs, their points and artifacts

    # Let the lab search d_int90 per augmentation instead of sweeping a grid of d:
    search = lab.submit_experiment("search", base={"dataset": "mnist", "epochs": 5},
                                   grid={"augmentation": ["linear", "rff"]}, seeds=[0, 1], baseline=True,
                                   search={"d_start": 8, "tolerance": 0.1})
    lab.wait(search)        # until every group's search has decided (or stopped)

Run configs use the field names of `idlab.config.RunConfig` everywhere. A run's config is
checked here before it is sent (against the lab's own dense-P budget); an experiment is
checked by the lab itself, as a dry run that stores nothing (the lab expands the grid), so
a mistake is a `LabValidationError` naming the field before anything is queued; the lab's
own 422 answers become the same exception. An experiment request takes whatever the API's
experiment schema accepts: keywords beyond name, base, grid, seeds and baseline are
sent as they are.

submit_run and submit_experiment send an Idempotency-Key, one per call: when the lab does not answer
(a timeout, a dropped connection, a 502/503/504), the call is sent again with the same key, up to
`Lab(retries=…)` times, and the lab answers the first request's result instead of queueing it twice.

Single resources come back as the API's JSON (dicts); tables as pandas DataFrames.
Only httpx (and pydantic) is needed to import this module; pandas for the tables, and tqdm, when
installed, draws the progress bars (`pip install 'idlab[client]'` brings all three).
It never imports torch or the lab's server code.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from idlab.config import (
    DEFAULT_DENSE_BUDGET_MB,
    DEFAULT_MEMORY_BUDGET_MB,
    RunConfig,
    dataset_spec,
    validation_context,
)
from idlab.statuses import FINISHED

if TYPE_CHECKING:
    import pandas

__all__ = ["Lab", "LabError", "LabConnectionError", "LabAuthError", "LabNotFound", "LabConflict",
           "LabValidationError", "LabTimeout", "check_run_config", "FINISHED"]

DEFAULT_URL = "http://127.0.0.1:8000"
TOKEN_ENV = "IDLAB_API_TOKEN"
#: A group of a search experiment in this state has a round queued or about to be: more runs will come.
SEARCHING = "searching"
PAGE_SIZE = 1000
TEXT_PROGRESS_SECONDS = 10.0
#: Answers after which a request sent with an Idempotency-Key is sent again: the lab may not have got it.
RETRY_STATUSES = (502, 503, 504)
#: Seconds before the first retry; doubled for each next one.
RETRY_BACKOFF_SECONDS = 0.5


# ---- errors --------------------------------------------------------------------------------------


class LabError(Exception):
    """The lab answered with an error, or could not be reached."""

    def __init__(self, message: str, status_code: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class LabConnectionError(LabError):
    """Nothing answered at the lab's URL (or not in time)."""


class LabAuthError(LabError):
    """The call changes the lab and the lab wants its API token (401)."""


class LabNotFound(LabError, LookupError):
    """No such run or experiment (404)."""


class LabConflict(LabError):
    """The run is not in a state that allows this (409), e.g. cancelling a finished run."""


class LabTimeout(LabError, TimeoutError):
    """wait() gave up before the run or the experiment finished; it keeps running in the lab."""


class LabValidationError(LabError, ValueError):
    """A run config or request with invalid fields: `errors` holds one {"field", "message", "input"} each.

    Raised before sending when the check here finds the mistake (status_code None), or from
    the lab's 422 answer (status_code 422). Field names read as in the request: `d` for a
    run, `grid.d[1]` or `base.projection` for an experiment, `seeds[2]`.
    """

    def __init__(self, what: str, errors: list[dict], status_code: int | None = None, detail: Any = None) -> None:
        self.errors = errors
        source = (f"the lab refused {what} ({status_code})" if status_code
                  else f"invalid {what} (checked before sending)")
        lines = [f"  {e['field']}: {e['message']}{_shown_input(e.get('input'))}" for e in errors]
        super().__init__("\n".join([f"{source}:", *lines]), status_code, detail)

    @property
    def fields(self) -> list[str]:
        return [e["field"] for e in self.errors]


def _shown_input(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    text = repr(value)
    return f" (got {text})" if len(text) <= 60 else ""


def field_name(loc: Iterable[str | int]) -> str:
    """A pydantic/FastAPI error location as the request reads: ("body", "grid", "d", 1) → "grid.d[1]"."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "request"


def _errors_of(exc: ValidationError, locate=lambda loc: loc) -> list[dict]:
    return [{"field": field_name(locate(tuple(e["loc"]))), "message": e["msg"], "input": e.get("input")}
            for e in exc.errors(include_url=False)]


def check_run_config(config: Mapping[str, Any] | RunConfig, dense_budget_mb: float | None = None,
                     memory_budget_mb: float | None = None) -> RunConfig:
    """The run config validated by `idlab.config.RunConfig` (as the lab does), or a LabValidationError.

    `dense_budget_mb` and `memory_budget_mb` are the lab's budgets (Lab reads them from the lab itself).
    """
    raw = _config_dict(config)
    context = validation_context(
        DEFAULT_DENSE_BUDGET_MB if dense_budget_mb is None else dense_budget_mb,
        DEFAULT_MEMORY_BUDGET_MB if memory_budget_mb is None else memory_budget_mb)
    try:
        return RunConfig.model_validate(raw, context=context)
    except ValidationError as exc:
        raise LabValidationError("run config", _errors_of(exc)) from None


def _config_dict(config: Mapping[str, Any] | RunConfig | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, RunConfig):
        return config.model_dump(mode="json", exclude_unset=True)
    if not isinstance(config, Mapping):
        raise TypeError(f"a run config is a mapping of RunConfig fields (or a RunConfig), not {type(config).__name__}")
    return dict(config)


# ---- the client ----------------------------------------------------------------------------------


class Lab:
    """The lab at `url`. `token` is its API token (default: $IDLAB_API_TOKEN), needed for calls that
    change something when the lab sets one; `timeout` bounds each HTTP request, in seconds; `retries`
    is how often a submission is sent again (with its Idempotency-Key) when the lab does not answer."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30.0,
                 retries: int = 2) -> None:
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.timeout = timeout
        self.retries = retries
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url + "/api", headers=headers, timeout=timeout)
        self._lab_budgets: tuple[float, float] | None = None

    def __repr__(self) -> str:
        return f"Lab({self.url!r}{', token=…' if self.token else ''})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- HTTP ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Any = None, json: Any = None, what: str = "the request",
                accept: tuple[int, ...] = (), idempotency_key: str | None = None,
                changes_nothing: bool = False, content: bytes | None = None) -> httpx.Response:
        """`method` on /api`path`; an error answer becomes the matching LabError (`what` names the payload).

        With `idempotency_key`, the request carries it, and is sent again with the same key (up to
        `retries` times, waiting longer each time) when no answer came or the lab answered 502/503/504:
        the lab answers a repeat with the first result, so nothing is created twice. A POST that
        `changes_nothing` (a dry run) is sent again the same way, without a key. `content` is a raw
        body (application/octet-stream) instead of `json`."""
        if idempotency_key is None and not changes_nothing:
            return self._send(method, path, params, json, what, accept, None, content)
        failure: LabError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1))
            try:
                response = self._send(method, path, params, json, what, accept + RETRY_STATUSES, idempotency_key,
                                      content)
            except LabConnectionError as exc:
                failure = exc
                continue
            if response.status_code in RETRY_STATUSES and response.status_code not in accept:
                failure = self._error(response, method, path, what)
                continue
            return response
        assert failure is not None
        with_key = " with the same Idempotency-Key" if idempotency_key else ""
        note = f" (sent {self.retries + 1} times{with_key})" if self.retries else ""
        raise type(failure)(f"{failure}{note}", failure.status_code, failure.detail)

    def _send(self, method: str, path: str, params: Any, json: Any, what: str, accept: tuple[int, ...],
              idempotency_key: str | None, content: bytes | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if content is not None:
            headers["Content-Type"] = "application/octet-stream"
        try:
            response = self._http.request(method, path, params=params, json=json, content=content,
                                          headers=headers or None)
        except httpx.TimeoutException:
            raise LabConnectionError(f"the lab at {self.url} did not answer {method} /api{path} within "
                                     f"{self.timeout:g} s (Lab(timeout=…) allows longer)") from None
        except httpx.TransportError as exc:
            raise LabConnectionError(f"cannot reach the lab at {self.url} ({type(exc).__name__}: {exc}); "
                                     "is it running (`idlab serve`)?") from None
        if response.is_success or response.status_code in accept:
            return response
        raise self._error(response, method, path, what)

    def _error(self, response: httpx.Response, method: str, path: str, what: str) -> LabError:
        code = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = response.text[:500]
        detail = body.get("detail", body) if isinstance(body, dict) else body
        if code == 422 and isinstance(detail, list):
            errors = []
            for e in detail:
                message = e.get("msg", "invalid")
                point = (e.get("ctx") or {}).get("grid_point")
                if isinstance(point, dict) and point:
                    message += " (at grid point " + ", ".join(f"{k}={v!r}" for k, v in point.items()) + ")"
                errors.append({"field": field_name(e.get("loc", ())), "message": message, "input": e.get("input")})
            return LabValidationError(what, errors, code, detail)
        if code == 401:
            hint = (" — pass the lab's token: Lab(url, token=…), or set $IDLAB_API_TOKEN" if not self.token
                    else " — check the token given to Lab()")
            return LabAuthError(f"{method} /api{path}: {detail}{hint}", code, detail)
        kind = {404: LabNotFound, 409: LabConflict}.get(code, LabError)
        return kind(f"{method} /api{path}: {code} {detail}", code, detail)

    def _get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    # ---- the lab --------------------------------------------------------------------------------

    def health(self) -> dict:
        """Database, broker and workers (`status` is "ok" or "degraded"; answered even when degraded)."""
        return self.request("GET", "/health", accept=(503,)).json()

    def config_schema(self) -> dict:
        """The run-config JSON schema, the lab's dense-P budget and its metric keys."""
        return self._get("/config/schema")

    def dense_budget_mb(self) -> float:
        """The lab's largest dense P in MiB (asked once): the local check applies the lab's own budget."""
        return self._budgets()[0]

    def _budgets(self) -> tuple[float, float]:
        """The lab's dense-P and memory budgets in MiB, asked once (a lab that does not say its memory
        budget has the default one)."""
        if self._lab_budgets is None:
            schema = self.config_schema()
            self._lab_budgets = (float(schema["dense_p_budget_mb"]),
                                 float(schema.get("memory_budget_mb", DEFAULT_MEMORY_BUDGET_MB)))
        return self._lab_budgets

    # ---- runs -----------------------------------------------------------------------------------

    def submit_run(self, config: Mapping[str, Any] | RunConfig | None = None, /, *, validate: bool = True,
                   idempotency_key: str | None = None, **fields: Any) -> dict:
        """Queue one run: `config` (a mapping or a RunConfig) and/or its fields as keywords; omitted
        fields take their defaults. Checked here first unless validate=False. Returns the run.

        Sent with an Idempotency-Key (a new UUID per call, or `idempotency_key`: the same key again, even
        from another process within a day, returns the same run instead of queueing a second one)."""
        raw = {**_config_dict(config), **fields}
        if validate:
            check_run_config(raw, *self._budgets())
        return self.request("POST", "/runs", json=raw, what="the run config",
                            idempotency_key=idempotency_key or str(uuid.uuid4())).json()

    def run(self, run: int | Mapping) -> dict:
        """A run: config, status, timings, D, k, d, progress, final metrics, error."""
        return self._get(f"/runs/{_id(run)}")

    def cancel(self, run: int | Mapping) -> dict:
        """Cancel a run: a queued one at once, a running one at its next check. LabConflict if finished."""
        return self.request("POST", f"/runs/{_id(run)}/cancel").json()

    def retry(self, run: int | Mapping) -> dict:
        """Queue a failed, cancelled or diverged run again. LabConflict otherwise."""
        return self.request("POST", f"/runs/{_id(run)}/retry").json()

    def delete_run(self, run: int | Mapping) -> None:
        """Delete a finished run with its points and artifacts. LabConflict while it is queued or running
        (cancel it first, and wait for a running one to stop), or while a queued or running run samples
        its P from it (p_init from_run:<id>)."""
        self.request("DELETE", f"/runs/{_id(run)}")

    def archive_run(self, run: int | Mapping, archived: bool = True) -> dict:
        """Hide the run from runs() (archived=False shows it again); nothing is deleted. Returns the run."""
        return self.request("PATCH", f"/runs/{_id(run)}", json={"archived": archived}).json()

    def distributions(self, run: int | Mapping) -> dict:
        """Histograms of P (per feature block) and θ_d, at initialisation and after training."""
        return self._get(f"/runs/{_id(run)}/distributions")

    def runs(self, *, status: str | Iterable[str] | None = None, experiment_id: int | None = None,
             role: str | None = None, config: Mapping[str, Any] | None = None, limit: int | None = None,
             sort: str = "-id", archived: bool | str = False, tag: str | Iterable[str] | None = None
             ) -> pandas.DataFrame:
        """Runs as a DataFrame, newest first, one row per run: run_id, experiment_id, role, status, …,
        `config.<field>` for every run-config field and `final.<metric>` for every final metric
        (the columns of `export`). `config={"projection": "fastfood", "d": [750, 1000]}` filters on
        config fields (a list means any of them); `limit` caps the rows (all by default); `sort` orders
        them across all pages, as the API does (`"-metrics.test_acc"`, `"config.d"`, `"status"`, …).
        Archived runs, and the runs of archived experiments, are left out unless `archived` is True (only
        them) or "all". `tag` keeps the runs holding that tag, or every one of a list of them (in any case);
        the `tags` column lists each run's."""
        pd = _pandas()
        params: list[tuple[str, Any]] = [("sort", sort), ("archived", _archived(archived))]
        params += [("status", s) for s in ([status] if isinstance(status, str) else status or [])]
        params += [("tag", t) for t in _listed(tag)]
        if experiment_id is not None:
            params.append(("experiment_id", experiment_id))
        if role is not None:
            params.append(("role", role))
        for name, values in (config or {}).items():
            for value in values if isinstance(values, (list, tuple, set)) else [values]:
                params.append((f"config.{name}", _query_value(value)))
        items: list[dict] = []
        while limit is None or len(items) < limit:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(items))
            page = self.request("GET", "/runs", params=[*params, ("limit", size), ("offset", len(items))]).json()
            items += page["items"]
            if not page["items"] or len(items) >= page["total"]:
                break
        rows = [_run_row(run) for run in items]
        config_columns = list(dict.fromkeys(c for row in rows for c in row if c.startswith("config.")))
        final_columns = sorted({c for row in rows for c in row if c.startswith("final.")})
        frame = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *config_columns, *final_columns])
        return _parse_times(frame)

    def metrics(self, run: int | Mapping, keys: str | Iterable[str] | None = None, *, max_points: int | None = None,
                x_min: float | None = None, x_max: float | None = None,
                method: str | None = None) -> pandas.DataFrame:
        """A run's series as a long DataFrame: columns step, key, value, epoch, one row per point the API
        gives (each series downsampled server-side to `max_points`, 1000 by default; `x_min`/`x_max`
        re-sample a range of steps). `attrs` holds each series' total and whether it was downsampled."""
        pd = _pandas()
        if isinstance(keys, str):
            keys = [keys]
        body = self._get(f"/runs/{_id(run)}/metrics", keys=",".join(keys) if keys else None, max_points=max_points,
                         x_min=x_min, x_max=x_max, method=method)
        rows = [(step, key, value, epoch) for key, series in body["series"].items()
                for step, value, epoch in zip(series["steps"], series["values"], series["epochs"], strict=True)]
        frame = pd.DataFrame(rows, columns=["step", "key", "value", "epoch"])
        frame = frame.astype({"step": "int64", "key": "object", "value": "float64", "epoch": "int64"})
        frame.attrs.update(run_id=body["run_id"], last_event_id=body["last_event_id"],
                           total={k: s["total"] for k, s in body["series"].items()},
                           downsampled={k: s["downsampled"] for k, s in body["series"].items()})
        return frame

    # ---- experiments ------------------------------------------------------------------------------

    def submit_experiment(self, name: str, base: Mapping[str, Any] | RunConfig | None = None,
                          grid: Mapping[str, list] | None = None, seeds: list[int] | None = None,
                          baseline: bool | float = False, *, validate: bool = True, idempotency_key: str | None = None,
                          **extra: Any) -> dict:
        """Queue a sweep: base × grid × seeds (+ one direct-training baseline per seed when baseline is
        True; a number is a global baseline accuracy). Any further keyword the API's experiment request
        accepts is sent as given. Returns the experiment with its `run_ids`. Sent with an Idempotency-Key,
        as submit_run is.

        With validate (the default) the lab first checks the request as a dry run, which stores nothing:
        a mistake anywhere in the grid is a LabValidationError naming `grid.<field>[i]` or `base.<field>`
        before anything is queued."""
        body = self._experiment_request(name, base, grid, seeds, baseline, extra)
        if validate:
            self._dry_run(body)
        return self.request("POST", "/experiments", json=body, what="the experiment",
                            idempotency_key=idempotency_key or str(uuid.uuid4())).json()

    def preview_experiment(self, name: str, base: Mapping[str, Any] | RunConfig | None = None,
                           grid: Mapping[str, list] | None = None, seeds: list[int] | None = None,
                           baseline: bool | float = False, **extra: Any) -> dict:
        """What submit_experiment would queue, stored nowhere (the API's dry run): run_count,
        baseline_count, each run's config, D, k and dense-P bytes, and warnings."""
        return self._dry_run(self._experiment_request(name, base, grid, seeds, baseline, extra))

    def _dry_run(self, body: dict) -> dict:
        # The lab expands the grid and checks every run with its own settings: one validation, the lab's.
        return self.request("POST", "/experiments", params={"dry_run": "true"}, json=body,
                            what="the experiment", changes_nothing=True).json()

    @staticmethod
    def _experiment_request(name, base, grid, seeds, baseline, extra) -> dict:
        body: dict[str, Any] = {"name": name, "base": _config_dict(base)}
        if grid is not None:
            body["grid"] = {field: list(values) if isinstance(values, tuple) else values
                            for field, values in grid.items()}
        if seeds is not None:
            body["seeds"] = list(seeds)
        if baseline is not False:
            body["baseline"] = baseline
        body.update(extra)
        return body

    def experiment(self, experiment: int | Mapping) -> dict:
        """An experiment: its request as stored, run counts per status, and its runs (id, status, role)."""
        return self._get(f"/experiments/{_id(experiment)}")

    def experiments(self, limit: int | None = None, archived: bool | str = False,
                    tag: str | Iterable[str] | None = None) -> pandas.DataFrame:
        """Experiments, newest first: experiment_id, name, created_at, run_count, a column per run status
        present, base, grid, seeds, baseline (mode), archived, tags. Archived experiments are left out unless
        `archived` is True (only them) or "all"; `tag` keeps those holding it (or every one of a list)."""
        pd = _pandas()
        items: list[dict] = []
        while limit is None or len(items) < limit:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(items))
            params = [("limit", size), ("offset", len(items)), ("archived", _archived(archived)),
                      *(("tag", t) for t in _listed(tag))]
            page = self.request("GET", "/experiments", params=params).json()
            items += page["items"]
            if not page["items"] or len(items) >= page["total"]:
                break
        statuses = [s for s in ("queued", "running", *FINISHED) if any(s in e["counts"] for e in items)]
        rows = [{"experiment_id": e["id"], "name": e["name"], "created_at": e["created_at"],
                 "run_count": e["run_count"], **{s: e["counts"].get(s, 0) for s in statuses},
                 "base": e["base"], "grid": e["grid"], "seeds": e["seeds"], "baseline": e["baseline"]["mode"],
                 "archived": e.get("archived", False), "tags": e.get("tags", [])}
                for e in items]
        columns = ["experiment_id", "name", "created_at", "run_count", *statuses, "base", "grid", "seeds", "baseline",
                   "archived", "tags"]
        return _parse_times(pd.DataFrame(rows, columns=columns))

    def summary(self, experiment: int | Mapping, raw: bool = False) -> pandas.DataFrame | dict:
        """Accuracy against d: one row per group × d with the group's fields (e.g. augmentation), d,
        mean, std, n (final test accuracy over the succeeded seeds), then the group's d_int90,
        d_int90_interpolated (on log d), d_int90_low, d_int90_high (the 95 % interval; high NaN: not
        reached), d_int90_method (how the interval is drawn), d_int90_at_min (d_int90 ≤ the smallest
        d: an upper bound), d_int90_not_reached, baseline, threshold, D, the finished runs left out
        of the curve (excluded_diverged, excluded_failed, excluded_cancelled, excluded_no_accuracy)
        and not_converged (some run's best test accuracy came at its last epoch); for a search
        experiment also search_status, bracket_lo and bracket_hi (d_int90 lies in (lo, hi]). A group
        with no finished run yet has one row with d empty. docs/statistics.md explains the numbers.
        raw=True gives the API's JSON; `attrs` holds it too."""
        body = self._get(f"/experiments/{_id(experiment)}/summary")
        if raw:
            return body
        pd = _pandas()
        fields, searched = body["fields"], body.get("kind") == "search"
        excluded = ["excluded_diverged", "excluded_failed", "excluded_cancelled", "excluded_no_accuracy"]
        numbers = ["d", "mean", "std", "n", "d_int90", "d_int90_interpolated", "d_int90_low", "d_int90_high",
                   "baseline", "threshold", "D", *excluded] + (["bracket_lo", "bracket_hi"] if searched else [])
        rows = []
        for group in body["groups"]:
            interval = group.get("d_int90_interval") or [None, None]
            shared = {name: group.get(name) for name in fields}
            shared |= {"d_int90": group["d_int90"], "d_int90_interpolated": group["d_int90_interpolated"],
                       "d_int90_low": interval[0], "d_int90_high": interval[1],
                       "d_int90_method": group["d_int90_method"], "d_int90_at_min": group["d_int90_at_min"],
                       "d_int90_not_reached": group["d_int90_not_reached"], "baseline": group["baseline"],
                       "threshold": group["threshold"], "D": group["D"],
                       **{column: group["excluded"][column.removeprefix("excluded_")] for column in excluded},
                       "not_converged": group["not_converged"]}
            if searched:
                state = group.get("search") or {}
                bracket = state.get("bracket") or [None, None]
                shared |= {"search_status": state.get("status"), "bracket_lo": bracket[0], "bracket_hi": bracket[1]}
            points = group["points"] or [{"d": None, "mean": None, "std": None, "n": 0}]
            rows += [{**shared, "d": p["d"], "mean": p["mean"], "std": p["std"], "n": p["n"]} for p in points]
        columns = [*fields, "d", "mean", "std", "n", "d_int90", "d_int90_interpolated", "d_int90_low", "d_int90_high",
                   "d_int90_method", "d_int90_at_min", "d_int90_not_reached", "baseline", "threshold", "D", *excluded,
                   "not_converged"] + (["search_status", "bracket_lo", "bracket_hi"] if searched else [])
        frame = pd.DataFrame(rows, columns=columns)
        for column in numbers:   # int where every value is one, else float with NaN for the missing
            frame[column] = pd.to_numeric(frame[column])
        frame.attrs.update(summary=body, fields=fields, baseline=body["baseline"], threshold=body["threshold"],
                           baseline_mode=body["baseline_mode"], fraction=body["fraction"])
        return frame

    def contrast(self, experiment: int | Mapping, field: str, a: Any, b: Any, metric: str = "test_acc",
                 confidence: float = 0.95, margin: float | None = None, raw: bool = False,
                 ) -> pandas.DataFrame | dict:
        """Does group a beat group b? One row per stratum (the other grid fields) × d: n_a, n_b, mean_a,
        mean_b, delta (a − b), ci_low, ci_high (Welch), df, p_value (one-sided, a > b), p_adjusted (Holm over
        the d), p_equivalence and equivalent (within ±margin, when given), reason (why no test), and the
        seed-matched check paired_pairs, paired_delta, paired_ci_low, paired_ci_high, paired_p_value.
        a and b are values of `field` (e.g. "rff", True, 0.001). docs/statistics.md explains the numbers;
        raw=True gives the API's JSON instead; `attrs` holds the contrast's field, a, b, metric, confidence
        and margin."""
        query = {"field": field, "a": _query_value(a), "b": _query_value(b), "metric": metric, "confidence": confidence,
                 "margin": margin}
        if raw:
            return self._get(f"/experiments/{_id(experiment)}/contrast", **query)
        pd = _pandas()
        csv = self.request("GET", f"/experiments/{_id(experiment)}/contrast",
                           params={k: v for k, v in {**query, "format": "csv"}.items() if v is not None}).text
        frame = pd.read_csv(io.StringIO(csv))     # the lab's own table of it: one row per stratum × d
        frame.attrs.update(field=field, a=a, b=b, metric=metric, confidence=confidence, margin=margin)
        return frame

    def export(self, experiment: int | Mapping) -> pandas.DataFrame:
        """Every run of the experiment, one row each: run_id, role, status, sizes and timings,
        `config.<field>` and `final.<metric>` (the API's export, list values kept as lists)."""
        pd = _pandas()
        body = self._get(f"/experiments/{_id(experiment)}/export", format="json")
        return _parse_times(pd.DataFrame(body["rows"], columns=body["columns"]))

    def cancel_experiment(self, experiment: int | Mapping) -> list[dict]:
        """Cancel every run of the experiment that has not finished; returns those runs."""
        cancelled = []
        for run in self.experiment(experiment)["runs"]:
            if run["status"] not in FINISHED:
                with contextlib.suppress(LabConflict):   # it finished meanwhile
                    cancelled.append(self.cancel(run["id"]))
        return cancelled

    def delete_experiment(self, experiment: int | Mapping) -> None:
        """Delete the experiment with all its runs (their points and artifacts). LabConflict while any of
        its runs is queued or running: cancel_experiment first, and wait for the running ones to stop."""
        self.request("DELETE", f"/experiments/{_id(experiment)}")

    def archive_experiment(self, experiment: int | Mapping, archived: bool = True) -> dict:
        """Hide the experiment from experiments() and its runs from runs() (archived=False shows them
        again); nothing is deleted and its runs go on. Returns the experiment."""
        return self.request("PATCH", f"/experiments/{_id(experiment)}", json={"archived": archived}).json()

    def archive(self, target: Mapping) -> dict:
        """Archive what the lab returned: a run (archive_run) or an experiment (archive_experiment)."""
        return self._archive(target, True)

    def unarchive(self, target: Mapping) -> dict:
        """Show an archived run or experiment (as the lab returned it) in the lists again."""
        return self._archive(target, False)

    def _archive(self, target: Mapping, archived: bool) -> dict:
        kind = _kind(target)
        if kind is None:
            raise TypeError("archive() and unarchive() take a run or an experiment as the lab returned it; for a "
                            "bare id use archive_run(id) or archive_experiment(id) (archived=False to unarchive)")
        method = self.archive_experiment if kind == "experiment" else self.archive_run
        return method(target["id"], archived)

    # ---- model files ------------------------------------------------------------------------------

    def model_file(self, run: int | Mapping) -> bytes:
        """A succeeded subspace run's model file: its config, seed and trained tensors (a few KB)."""
        return self.request("GET", f"/runs/{_id(run)}/model", what="the run's model file").content

    def evaluate_model(self, model: bytes | str | os.PathLike, device: str | None = None, *, wait: bool = True,
                       timeout: float | None = None, poll_seconds: float = 0.5) -> dict:
        """Have a worker rebuild a model file (bytes, or a path to one) and evaluate it on the lab's data.

        Returns the evaluation; with `wait`, once finished: `result["test_acc"]` beside
        `result["recorded_test_acc"]`, or `status == "failed"` with `error` saying why the worker
        refused it. A file the lab refuses at once (not a model file, changed after export, another
        format) raises LabValidationError. `device`: cpu, cuda, cuda:N or auto (default: the run's)."""
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        evaluation = self.request("POST", "/models/evaluate", params={"device": device} if device else None,
                                  content=data, what="the model file").json()
        deadline = _Deadline(timeout)
        while wait and evaluation["status"] not in ("succeeded", "failed"):
            if deadline.passed():
                raise LabTimeout(f"model evaluation {evaluation['id']} is still {evaluation['status']} after "
                                 f"{timeout:g} s: is a worker of its device running?", detail=evaluation)
            deadline.sleep(poll_seconds)
            evaluation = self._get(f"/models/evaluations/{evaluation['id']}")
        return evaluation

    # ---- tags and notes -------------------------------------------------------------------------

    def tag(self, target: Mapping, *tags: str) -> dict:
        """Add tags to a run or an experiment, as the lab returned it (`lab.tag(lab.run(7), "baseline")`); a
        tag it has already (in any case) is left as it is. Returns it as it now stands.

        A tag is 1 to 40 characters: letters, digits, spaces and _ . : - / (the lab says what to fix)."""
        path, answer = self._tags_path(target, "tag"), dict(target)
        for tag in tags:
            answer = self.request("POST", path, json={"tag": tag}, what=f"the tag {tag!r}").json()
        return answer

    def untag(self, target: Mapping, *tags: str) -> dict:
        """Remove tags (in any case) from a run or an experiment, as the lab returned it; one it does not
        have is no error. Returns it as it now stands."""
        path, answer = self._tags_path(target, "untag"), dict(target)
        for tag in tags:
            answer = self.request("DELETE", f"{path}/{urllib.parse.quote(tag, safe='')}",
                                  what=f"the tag {tag!r}").json()
        return answer

    def set_tags(self, target: Mapping, tags: Iterable[str]) -> dict:
        """Replace the tags of a run or an experiment (as the lab returned it) with `tags` ([] removes them)."""
        path = self._tags_path(target, "set_tags").removesuffix("/tags")
        return self.request("PATCH", path, json={"tags": list(tags)}, what="the tags").json()

    def set_notes(self, target: Mapping, notes: str) -> dict:
        """Replace the notes of a run or an experiment (as the lab returned it); "" clears them. Free text of
        at most 10,000 characters."""
        path = self._tags_path(target, "set_notes").removesuffix("/tags")
        return self.request("PATCH", path, json={"notes": notes}, what="the notes").json()

    def tags(self, prefix: str = "") -> pandas.DataFrame:
        """The tags in use, the most used first: tag, runs, experiments (how many hold it); `prefix` keeps
        those starting with it (in any case)."""
        items = self._get("/tags", prefix=prefix or None)["items"]
        return _pandas().DataFrame(items, columns=["tag", "runs", "experiments"])

    def _tags_path(self, target: Any, method: str) -> str:
        kind = _kind(target)
        if kind is None:
            raise TypeError(f"{method}() takes a run or an experiment as the lab returned it (a dict), not "
                            f"{target!r}: for an id, pass lab.run(id) or lab.experiment(id)")
        return f"/{kind}s/{_id(target)}/tags"

    # ---- waiting ----------------------------------------------------------------------------------

    def wait(self, target: Mapping, timeout: float | None = None, quiet: bool = False,
             poll_seconds: float = 1.0) -> dict:
        """Wait for what submit_run / submit_experiment (or run / experiment) returned to finish, with a
        progress bar unless quiet; returns the finished run, or the experiment with its runs. A failed
        run is returned, not raised: look at its status and error. LabTimeout after `timeout` seconds."""
        kind = _kind(target)
        if kind == "experiment":
            return self.wait_experiment(target["id"], timeout, quiet, poll_seconds)
        if kind == "run":
            return self.wait_run(target["id"], timeout, quiet, poll_seconds)
        raise TypeError("wait() takes a run or an experiment as the lab returned it (e.g. from submit_run); "
                        "for a bare id use wait_run(id) or wait_experiment(id)")

    def wait_run(self, run: int | Mapping, timeout: float | None = None, quiet: bool = False,
                 poll_seconds: float = 1.0) -> dict:
        """Poll the run until it has finished (see wait); the bar counts its training steps."""
        run_id = _id(run)
        deadline = _Deadline(timeout)
        body = self.run(run_id)
        bar = _progress(f"run {run_id}", _total_steps(body["config"]), "step", quiet)
        try:
            while True:
                progress = body.get("progress") or {}
                bar.update(progress.get("step", 0), None, _run_state(body))
                if body["status"] in FINISHED:
                    bar.finish(_run_state(body))
                    return body
                if deadline.passed():
                    raise LabTimeout(f"run {run_id} is still {body['status']} after {timeout:g} s "
                                     f"({_run_state(body)}); it goes on in the lab: wait again, or cancel it",
                                     detail=body)
                deadline.sleep(poll_seconds)
                body = self.run(run_id)
        finally:
            bar.close()

    def wait_experiment(self, experiment: int | Mapping, timeout: float | None = None, quiet: bool = False,
                        poll_seconds: float = 1.0) -> dict:
        """Poll the experiment until every run has finished; the bar counts finished runs. A search
        experiment queues rounds as earlier ones finish: it is done once no group is still searching
        (a group "blocked" by a failed or cancelled run waits for a retry: wait returns, the summary
        says which). Returns the experiment."""
        experiment_id = _id(experiment)
        deadline = _Deadline(timeout)
        body = self.experiment(experiment_id)
        bar = _progress(f"experiment {experiment_id}", len(body["runs"]), "run", quiet)
        try:
            while True:
                counts = Counter(run["status"] for run in body["runs"])
                finished = sum(counts[s] for s in FINISHED)
                state = ", ".join(f"{counts[s]} {s}" for s in ("queued", "running", *FINISHED) if counts[s])
                done = finished == len(body["runs"])
                if done and body.get("kind") == "search":
                    groups = Counter((group.get("search") or {}).get("status")
                                     for group in self.summary(experiment_id, raw=True)["groups"])
                    state += "; groups: " + ", ".join(f"{n} {status}" for status, n in groups.items())
                    done = groups[SEARCHING] == 0
                bar.update(finished, len(body["runs"]), state)
                if done:
                    bar.finish(state or "no runs")
                    return body
                if deadline.passed():
                    raise LabTimeout(f"experiment {experiment_id} has not finished after {timeout:g} s ({state}); "
                                     "it goes on in the lab: wait again, or cancel_experiment it", detail=body)
                deadline.sleep(poll_seconds)
                body = self.experiment(experiment_id)
        finally:
            bar.close()


# ---- rows and helpers ----------------------------------------------------------------------------


class _Deadline:
    """`timeout` seconds from now (None: never), for the wait loops."""

    def __init__(self, timeout: float | None):
        self.at = None if timeout is None else time.monotonic() + timeout

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or less when the deadline comes sooner."""
        time.sleep(seconds if self.at is None else max(0.0, min(seconds, self.at - time.monotonic())))


#: The run columns of runs(), in the order of the API's export (backend.domain.analysis.export.RUN_COLUMNS), plus
#: what only a live run has.
RUN_COLUMNS = ("run_id", "experiment_id", "role", "status", "attempt", "D", "k", "d", "created_at", "started_at",
               "finished_at", "duration_seconds", "error", "tags", "notes", "queued_at", "heartbeat_at", "worker",
               "cancel_requested")


def _run_row(run: dict) -> dict:
    row = {"run_id": run["id"], **{name: run.get(name) for name in RUN_COLUMNS[1:]}}
    row |= {f"config.{name}": value for name, value in run["config"].items()}
    row |= {f"final.{name}": value for name, value in (run.get("final_metrics") or {}).items()}
    return row


def _parse_times(frame: pandas.DataFrame) -> pandas.DataFrame:
    pd = _pandas()
    for column in frame.columns:
        if isinstance(column, str) and column.endswith("_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


def _query_value(value: Any) -> str:
    """A grid value as the contrast's query names it: text as it is, anything else as JSON (true, 0.001)."""
    return value if isinstance(value, str) else json.dumps(value)


def _id(thing: int | Mapping) -> int:
    if isinstance(thing, Mapping):
        return int(thing["id"])
    if isinstance(thing, bool) or not isinstance(thing, int):
        raise TypeError(f"expected an id (int) or what the lab returned (a dict with 'id'), not {thing!r}")
    return thing


def _kind(target: Any) -> str | None:
    """"run" or "experiment" for what the lab returned (a dict), None for anything else."""
    if isinstance(target, Mapping) and "id" in target:
        if "run_ids" in target or "run_count" in target:
            return "experiment"
        if "config" in target and "status" in target:
            return "run"
    return None


def _listed(value: str | Iterable[str] | None) -> list[str]:
    """One value or several as a list ("a" is one tag, not three letters)."""
    return [value] if isinstance(value, str) else list(value or [])


def _archived(value: bool | str) -> str:
    """The lists' `archived` parameter: False (the default: not archived), True (only archived) or "all"."""
    if value in (True, False, "all"):
        return {True: "true", False: "false"}.get(value, "all")
    raise ValueError(f"archived is True, False or 'all', not {value!r}")


def _query_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("the lab's tables are pandas DataFrames: pip install pandas "
                          "(or pip install 'idlab[client]')") from None
    return pandas


def _total_steps(config: Mapping[str, Any]) -> int | None:
    """Training steps of a run: epochs × ⌈training examples / batch size⌉ (None for a dataset not installed here)."""
    try:
        spec = dataset_spec(config.get("dataset"))
    except ValueError:
        return None
    examples = min(config.get("train_size") or spec.train_size, spec.train_size)
    return config.get("epochs", 1) * math.ceil(examples / config.get("batch_size", 128))


def _run_state(run: Mapping[str, Any]) -> str:
    """A run's state in a few words: status, epoch and the latest metrics (or its error)."""
    progress, final = run.get("progress") or {}, run.get("final_metrics") or {}
    parts = [run["status"]]
    if "epoch" in progress:
        parts.append(f"epoch {progress['epoch']}/{run['config'].get('epochs', '?')}")
    values = final if run["status"] in FINISHED and final else progress
    parts += [f"{key}={values[key]:.4f}" for key in ("train_loss", "test_acc")
              if isinstance(values.get(key), (int, float))]
    if run.get("error"):
        parts.append(str(run["error"]).splitlines()[0][:120])
    return " ".join(parts)


# ---- progress -----------------------------------------------------------------------------------


class _Silent:
    def update(self, n: int, total: int | None, state: str) -> None:
        pass

    def finish(self, state: str) -> None:
        pass

    def close(self) -> None:
        pass


class _TqdmProgress(_Silent):
    def __init__(self, tqdm, description: str, total: int | None, unit: str) -> None:
        self.bar = tqdm(total=total, desc=description, unit=unit, leave=True, dynamic_ncols=True)

    def update(self, n: int, total: int | None, state: str) -> None:
        if total is not None and total != self.bar.total:
            self.bar.total = total
        self.bar.n = n
        self.bar.set_postfix_str(state, refresh=False)
        self.bar.refresh()

    def finish(self, state: str) -> None:
        self.bar.set_postfix_str(state, refresh=False)   # close() draws the last line

    def close(self) -> None:
        self.bar.close()


class _TextProgress(_Silent):
    """Without tqdm: a line when the state changes, at most every TEXT_PROGRESS_SECONDS, and the last one."""

    def __init__(self, description: str, total: int | None, unit: str, stream=None) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.stream = stream or sys.stderr
        self.n, self.last_line, self.printed_at = 0, "", -math.inf

    def _line(self, state: str) -> str:
        count = f"{self.n}/{self.total} {self.unit}s" if self.total else f"{self.n} {self.unit}s"
        return f"{self.description}: {count}  {state}"

    def update(self, n: int, total: int | None, state: str) -> None:
        self.n, self.total = n, total if total is not None else self.total
        line = self._line(state)
        if line != self.last_line and time.monotonic() - self.printed_at >= TEXT_PROGRESS_SECONDS:
            self._print(line)

    def finish(self, state: str) -> None:
        line = self._line(state)
        if line != self.last_line:
            self._print(line)

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
        self.last_line, self.printed_at = line, time.monotonic()


def _progress(description: str, total: int | None, unit: str, quiet: bool) -> _Silent:
    if quiet:
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextProgress(description, total, unit)
    return _TqdmProgress(tqdm, description, total, unit)
