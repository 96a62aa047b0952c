"""Which of the reference code's settings explain a gap: one preset's run, rerun across the fidelity switches.

    python -m bench.ablation                                   # li-mnist-fc at d = 100, 20 epochs, seed 0
    python -m bench.ablation --preset li-mnist-fc --d 100 300 --epochs 20 --seeds 0 1
    python -m bench.ablation --switches inputs init --json docs/reproduction/ablation.json

A *switch* is a run-config field where the paper's reference code differs from the lab's
plain default (`FIDELITY_FIELDS`); the preset sets each to the reference value. The table's
rows are

    lab defaults     every switch at RunConfig's default (the preset otherwise unchanged)
    + <switch>       that one switch at the preset's value, the others at the defaults
    − <switch>       every switch at the preset's value but that one (with --leave-one-out)
    preset           every switch at the preset's value: the preset as it stands

Every row trains each (d, seed) with the engine in this process (`worker.subspace.training.train`)
and shows the mean final test accuracy per d, its change against the first row, and the
published accuracy where the preset has a curve (`published["curve"]`). Runs are seeded, so a
row differs from another only by its switches.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from idlab import presets
from idlab.config import RunConfig

#: The switches: name → the run-config field it sets (the lab's default is RunConfig's).
FIDELITY_FIELDS = {
    "init": "theta0_init",
    "biases": "bias_init",
    "inputs": "input_scaling",
    "l2": "weight_decay_scope",
    "sparse": "sparse_scope",
    "rff": "rff_centered",
}


@dataclass
class Row:
    label: str
    overrides: dict
    accuracies: dict[int, list[float]]   # d → final test accuracy per seed
    seconds: float = 0.0

    def mean(self, d: int) -> float:
        return float(np.mean(self.accuracies[d]))


def switches_of(base: dict, names: list[str] | None) -> dict[str, tuple[object, object]]:
    """name → (lab default, preset value) for each switch where the preset departs from the default."""
    defaults = RunConfig.model_fields
    found = {}
    for name, field in FIDELITY_FIELDS.items():
        if names and name not in names:
            continue
        default, reference = defaults[field].default, base.get(field, defaults[field].default)
        if reference != default and _matters(field, base):
            found[name] = (default, reference)
    return found


def _matters(field: str, base: dict) -> bool:
    """A switch that cannot change this run (sparse_scope of a fastfood P) is left out."""
    if field == "sparse_scope":
        return base.get("projection") == "sparse"
    if field == "rff_centered":
        return "rff" in str(base.get("augmentation", ""))
    return True


def plan(base: dict, switches: dict[str, tuple[object, object]], leave_one_out: bool) -> list[tuple[str, dict]]:
    """The rows: (label, the switch fields it sets)."""
    plain = {FIDELITY_FIELDS[name]: default for name, (default, _) in switches.items()}
    reference = {FIDELITY_FIELDS[name]: value for name, (_, value) in switches.items()}
    rows = [("lab defaults", plain)]
    rows += [(f"+ {name}", {**plain, FIDELITY_FIELDS[name]: reference[FIDELITY_FIELDS[name]]}) for name in switches]
    if leave_one_out:
        rows += [(f"− {name}", {**reference, FIDELITY_FIELDS[name]: plain[FIDELITY_FIELDS[name]]}) for name in switches]
    if len(switches) > 1 or not rows[1:]:
        rows.append(("preset", reference))
    return rows


def run_row(base: dict, overrides: dict, ds: list[int], seeds: list[int], epochs: int,
            data_dir: str | None, progress) -> tuple[dict[int, list[float]], float]:
    from backend.domain.settings import Settings
    from worker.subspace.data import load_dataset
    from worker.subspace.training import train

    started = time.perf_counter()
    accuracies: dict[int, list[float]] = {}
    for d in ds:
        for seed in seeds:
            config = RunConfig.model_validate({**base, **overrides, "d": d, "seed": seed, "epochs": epochs})
            result = train(config, load_dataset(config, data_dir or Settings().data_dir))
            accuracy = result.metrics.get("test_acc", float("nan"))
            accuracies.setdefault(d, []).append(accuracy)
            progress(f"  d={d} seed={seed}: {result.status}, test_acc {accuracy:.4f} "
                     f"({result.metrics['seconds']:.0f} s)")
    return accuracies, time.perf_counter() - started


def table(rows: list[Row], ds: list[int], published: dict[int, float]) -> str:
    head = "| setting | fields | " + " | ".join(f"d = {d}" for d in ds) + " | seconds |"
    lines = [head, "|" + "---|" * (len(ds) + 3)]
    if published:
        cells = [f"{published[d]:.4f}" if d in published else "" for d in ds]
        lines.append("| published | | " + " | ".join(cells) + " | |")
    first = rows[0]
    for row in rows:
        cells = []
        for d in ds:
            cell = f"{row.mean(d):.4f}"
            if row is not first:
                cell += f" ({row.mean(d) - first.mean(d):+.4f})"
            cells.append(cell)
        fields = ", ".join(f"{field}={value}" for field, value in row.overrides.items())
        lines.append(f"| {row.label} | {fields} | " + " | ".join(cells) + f" | {row.seconds:.0f} |")
    return "\n".join(lines)


def published_curve(preset: presets.Preset) -> dict[int, float]:
    curve = preset.published.get("curve") or {}
    return dict(zip(curve.get("d", []), curve.get("test_acc", []), strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="li-mnist-fc")
    parser.add_argument("--d", type=int, nargs="+", default=[100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--switches", nargs="+", choices=sorted(FIDELITY_FIELDS), help="only these switches")
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=JSON",
                        help="further run-config fields for every row, "
                             "e.g. projection='\"sparse\"' augmentation='\"rff\"'")
    parser.add_argument("--leave-one-out", action="store_true", help="also every switch off from the preset")
    parser.add_argument("--data-dir", default=None, help="the folder that holds MNIST/ (default IDLAB_DATA_DIR)")
    parser.add_argument("--json", type=Path, help="also write the rows, the settings and the machine here")
    args = parser.parse_args(argv)

    preset = presets.get(args.preset)
    base = dict(preset.request["base"])
    for assignment in args.set:
        field, _, value = assignment.partition("=")
        base[field] = json.loads(value)
    switches = switches_of(base, args.switches)
    if not switches:
        print(f"{args.preset}: no fidelity switch departs from the lab's defaults here", file=sys.stderr)
        return 2

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    rows = []
    for label, overrides in plan(base, switches, args.leave_one_out):
        progress(f"{label}: {overrides}")
        accuracies, seconds = run_row(base, overrides, args.d, args.seeds, args.epochs, args.data_dir, progress)
        rows.append(Row(label, overrides, accuracies, seconds))

    budget = f"{args.preset}, {args.epochs} epochs, seeds {args.seeds}, d {args.d}"
    print(f"Ablation of {budget} (mean final test accuracy; in brackets the change against the first row)\n")
    print(table(rows, args.d, published_curve(preset)))
    if args.json:
        args.json.write_text(json.dumps({
            "preset": args.preset, "epochs": args.epochs, "seeds": args.seeds, "d": args.d, "set": args.set,
            "rows": [{"label": r.label, "overrides": r.overrides,
                      "test_acc": {str(d): a for d, a in r.accuracies.items()}, "seconds": r.seconds} for r in rows],
            "published": {str(d): a for d, a in published_curve(preset).items()},
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "torch": torch.__version__, "threads": torch.get_num_threads()},
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
