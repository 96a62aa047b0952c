"""A paper preset at its full budget, run through a lab as an experiment, so its dashboard shows it.

    idlab serve --data-dir DIR &                                       # a lab (or `make lab`)
    python -m bench.lab_reproduction li-mnist-fc                       # queue the preset, wait, save
    python -m bench.lab_reproduction li-mnist-fc --experiment 3        # wait for (and save) one already queued
    python -m bench.lab_reproduction li-mnist-fc --experiment 3 --now  # save what has finished so far
    python -m bench.lab_reproduction li-mnist-fc --set epochs=30       # a smaller budget, named in the file
    python -m bench.lab_reproduction li-mnist-fc --first 100 300 750   # these d are queued first

It submits the preset's experiment request (`GET /api/config/presets/<id>`) to the lab at --url,
waits with a progress line until every run has finished, then saves under docs/reproduction/
`<preset>-lab.json`: the request as submitted, the experiment's summary (accuracy against d with
mean ± std over seeds, d_int90 with its interval) and export (every run's config and final
metrics), the published figures, the wall time and the machine. It prints the measured curve
beside the published one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from idlab.client import Lab

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "reproduction"


def submit(lab: Lab, preset_id: str, overrides: dict, first: list[int]) -> dict:
    preset = lab.request("GET", f"/config/presets/{preset_id}").json()
    request = preset["request"]
    request["base"].update(overrides)
    if first:  # the same grid, queued in another order: these d first
        grid_d = request["grid"]["d"]
        if not set(first) <= set(grid_d):
            raise SystemExit(f"--first {first}: not all in the preset's grid of d {grid_d}")
        request["grid"]["d"] = first + [d for d in grid_d if d not in first]
    if overrides:
        request["name"] += " (" + ", ".join(f"{k}={v}" for k, v in overrides.items()) + ")"
    experiment = lab.request("POST", "/experiments", json=request, what="the preset's request").json()
    print(f"queued experiment {experiment['id']}: {len(experiment['run_ids'])} runs", flush=True)
    return experiment


def curve_table(summary: dict, published: dict) -> str:
    curve = published.get("curve") or {}
    reference = dict(zip(curve.get("d", []), curve.get("test_acc", []), strict=True))
    lines = []
    for group in summary["groups"]:
        label = ", ".join(f"{field}={group.get(field)}" for field in summary["fields"]) or "all runs"
        interval = group.get("d_int90_interval") or [None, None]
        lines.append(f"{label}: d_int90 = {group.get('d_int90')}, interpolated {group.get('d_int90_interpolated')}, "
                     f"interval {interval}; published {published.get('d_int90', '–')}")
        lines.append("| d | n | mean test acc | std | published | difference |")
        lines.append("|---|---|---|---|---|---|")
        for point in group["points"]:
            ref = reference.get(point["d"])
            diff = f"{point['mean'] - ref:+.4f}" if ref is not None else ""
            lines.append(f"| {point['d']} | {point['n']} | {point['mean']:.4f} | {point['std']:.4f} | "
                         f"{'' if ref is None else f'{ref:.4f}'} | {diff} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=os.environ.get("IDLAB_API_TOKEN"))
    parser.add_argument("--experiment", type=int, help="wait for this experiment instead of queueing a new one")
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=JSON", help="override base fields")
    parser.add_argument("--first", type=int, nargs="+", default=[],
                        help="queue the runs of these d first (the grid is the preset's, in another order)")
    parser.add_argument("--out", type=Path, help="where to save (default docs/reproduction/<preset>-lab.json)")
    parser.add_argument("--now", action="store_true",
                        help="with --experiment: save what has finished so far instead of waiting for every run")
    args = parser.parse_args(argv)

    overrides = {field: json.loads(value) for field, _, value in (a.partition("=") for a in args.set)}
    started = time.time()
    with Lab(args.url, token=args.token, timeout=120) as lab:
        experiment = (lab.experiment(args.experiment) if args.experiment
                      else submit(lab, args.preset, overrides, args.first))
        if not args.now:
            lab.wait_experiment(experiment)
        summary = lab.summary(experiment, raw=True)
        export = lab.request("GET", f"/experiments/{experiment['id']}/export", params={"format": "json"}).json()
        body = lab.experiment(experiment)
        published = lab.request("GET", f"/config/presets/{args.preset}").json()["published"]
    suffix = "".join(f"-{k}{v}" for k, v in overrides.items())
    out = args.out or RESULTS / f"{args.preset}{suffix}-lab.json"
    out.write_text(json.dumps({
        "preset": args.preset, "overrides": overrides,
        "experiment": {k: body.get(k) for k in ("id", "name", "created_at")},
        "published": published, "summary": summary, "export": export,
        "waited_seconds": round(time.time() - started),
        "runs_by_status": dict(Counter(run["status"] for run in body["runs"])),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=1, default=str) + "\n")
    print(curve_table(summary, published))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
