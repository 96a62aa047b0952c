"""The `idlab` command line.

    idlab train --d 750 --projection fastfood --epochs 1     one run, locally, with a progress bar
    idlab train --config run.yaml --json                     … its last line the final metrics as JSON
    idlab train --preset li-mnist-fc --d 750                 one run of a paper preset (flags override it)
    idlab presets [--json]                                   the paper presets: experiment requests with their settings
    idlab serve                                              the lab: API, worker and reaper (SQLite, local queue)
    idlab worker --queues gpu,cpu                            a worker against $IDLAB_DATABASE_URL / $IDLAB_BROKER_URL
    idlab data list | fetch mnist                            the datasets: present, missing or corrupt; download one

Every run-config field is a flag of the same name (`--power_orders 2,3` or
`--power-orders 2,3`; booleans as `--train_p` / `--no-train_p`); a JSON or YAML
file given with --config supplies the rest, and flags override it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from idlab.config import FROM_RUN_PATTERN, RunConfig, validation_messages

EXIT_INVALID = 2
EXIT_RUN_FAILED = 1
EXIT_MISSING_PACKAGE = 3


def _is_sequence(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (list, tuple)


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, named after it, with its description and default."""
    group = parser.add_argument_group("run config (each flag is a RunConfig field)")
    for name, field in RunConfig.model_fields.items():
        names = list(dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"]))
        default = field.get_default()
        help_text = f"{field.description} (default: {default})"
        if _is_bool(field.annotation):
            group.add_argument(*names, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            metavar = "A,B,…" if _is_sequence(field.annotation) else name.upper()
            group.add_argument(*names, dest=name, default=None, metavar=metavar, help=help_text)


def _flag_value(annotation: Any, text: str) -> Any:
    if _is_sequence(annotation):
        text = text.strip()
        return json.loads(text) if text.startswith("[") else [part.strip() for part in text.split(",") if part.strip()]
    if text.lower() in ("none", "null") and type(None) in typing.get_args(annotation):
        return None
    return text


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The raw config: the --config file, overridden by the flags given (validation comes after)."""
    raw: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            raw = yaml.safe_load(text) or {}
        else:
            raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"{path} must hold a mapping of run-config fields")
    for name, field in RunConfig.model_fields.items():
        value = getattr(args, name, None)
        if value is not None:
            raw[name] = value if isinstance(value, bool) else _flag_value(field.annotation, value)
    return raw


def _print_invalid(error: ValidationError) -> None:
    print("invalid run config:", file=sys.stderr)
    for problem in validation_messages(error):
        print(f"  {problem['field']}: {problem['message']}", file=sys.stderr)


def _progress_callback(config: RunConfig, train_examples: int, quiet: bool):
    from tqdm import tqdm

    from idlab import metrics as M

    total = config.epochs * math.ceil(train_examples / config.batch_size)
    bar = tqdm(total=total, unit="step", file=sys.stderr, disable=quiet, dynamic_ncols=True)
    shown: dict[str, float] = {}

    def on_points(points) -> bool:
        for point in points:
            if point.key in (M.TRAIN_LOSS, M.TRAIN_ACC, M.TEST_ACC):
                shown[point.key] = point.value
            if point.step > bar.total:
                bar.total = point.step
            bar.n = point.step
            bar.set_description(f"epoch {point.epoch}/{config.epochs}")
        if points:
            bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items()}, refresh=True)
        return False

    return on_points, bar


def config_from_preset(preset_id: str, chosen: dict[str, Any], from_run_stats: str | None) -> dict[str, Any]:
    """The raw config of one run of a preset: its base, the fields `chosen` (flags, --config) over it.

    Every field the preset sweeps needs a value, except the subspace fields of a direct run; a
    template (P from an earlier run) is filled from the --from-run-stats file's config. Raises
    PresetError naming the field to give.
    """
    from backend.domain.grid import SUBSPACE_ONLY
    from idlab import presets

    preset = presets.get(preset_id)
    if preset.is_template:
        if not from_run_stats:
            raise presets.PresetError("from-run-stats", f"preset {preset.id!r} draws P from an earlier run's "
                                      "trained P: pass --from-run-stats FILE (written by `idlab train --preset "
                                      "lam-lee-trained-p … --stats-out FILE`)")
        source = json.loads(Path(from_run_stats).read_text())["config"]
        label = _label(Path(from_run_stats))
        if "p_init" in chosen:          # --p_init from_run:<id> names the source run
            named = FROM_RUN_PATTERN.match(str(chosen.pop("p_init")))
            if named is None:
                raise presets.PresetError("p_init", f"preset {preset.id!r} draws P from an earlier run: give "
                                                    "--p_init from_run:<id>, or leave it out")
            label = named.group(1)
        request = presets.fill(preset, label, source)
    else:
        request = presets.fill(preset)
    direct = {**request["base"], **chosen}.get("method") == "direct"
    return presets.single_run(request, chosen, optional=SUBSPACE_ONLY if direct else frozenset())


def _label(path: Path) -> str:
    """A run label from a file name, as p_init from_run:<label> accepts it."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", path.stem)[:64] or "file"


def command_train(args: argparse.Namespace) -> int:
    from backend.domain.settings import Settings
    from backend.domain.validation import check_run_config

    raw = _raw_train_config(args)
    if raw is None:
        return EXIT_INVALID
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    try:
        config = check_run_config(raw, settings)
    except ValidationError as error:
        _print_invalid(error)
        return EXIT_INVALID
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)

    from_run_stats = None
    if config.from_run_id is not None:
        if not args.from_run_stats:
            print(f"p_init {config.p_init!r} needs the statistics of that run's trained P: pass "
                  "--from-run-stats FILE (written by an earlier `idlab train --stats-out FILE`)", file=sys.stderr)
            return EXIT_INVALID
        from worker.subspace.statistics import sampling_stats
        from_run_stats = sampling_stats(json.loads(Path(args.from_run_stats).read_text())["statistics"]["P"])

    from worker.devices import configure_native_kernels
    from worker.subspace.training import train

    configure_native_kernels(settings.kernel_cache_dir, settings.c_compiler)
    splits = _load_train_splits(args, config, settings)
    if splits is None:
        return EXIT_INVALID
    callback, bar = _progress_callback(config, len(splits.train_y), args.quiet or args.json)
    try:
        result = train(config, splits, callback, from_run_stats=from_run_stats, compile_step=args.compile)
    finally:
        bar.close()
    _report_train_result(args, config, result)
    return 0 if result.status == "succeeded" else EXIT_RUN_FAILED


def _raw_train_config(args: argparse.Namespace) -> dict | None:
    """The config the arguments (and --preset) give, unvalidated; None, said on stderr, when it cannot be read."""
    from idlab.presets import PresetError

    try:
        raw = config_from_args(args)
        if args.preset:
            raw = config_from_preset(args.preset, raw, args.from_run_stats)
    except PresetError as problem:
        print(f"preset {args.preset}:\n  {problem.field}: {problem.message}", file=sys.stderr)
        return None
    except (OSError, ValueError, KeyError) as problem:
        print(f"cannot read the config: {problem}", file=sys.stderr)
        return None
    return raw


def _load_train_splits(args: argparse.Namespace, config: RunConfig, settings):
    """The run's dataset (downloaded if allowed, with a progress line); None, said on stderr, when it is missing."""
    from idlab.launchers.data_command import DownloadLine
    from worker.subspace.data import DatasetCorrupt, DatasetMissing, DownloadError, load_dataset

    download_line = DownloadLine(config.dataset, args.quiet or args.json)
    try:
        return load_dataset(config, settings.data_dir, mirrors=settings.dataset_mirrors, on_progress=download_line,
                            download=settings.allow_download if args.download is None else args.download)
    except (DatasetMissing, DatasetCorrupt, DownloadError) as missing:
        print(str(missing), file=sys.stderr)
        return None
    finally:
        download_line.close()


def _report_train_result(args: argparse.Namespace, config: RunConfig, result) -> None:
    """The run's outcome: --stats-out's file, its error on stderr, its metrics as JSON or a table."""
    if args.stats_out:
        Path(args.stats_out).write_text(json.dumps({"config": config.model_dump(mode="json"),
                                                    "status": result.status, "metrics": result.metrics,
                                                    "statistics": result.statistics}, indent=1))
    if result.error:
        print(f"run {result.status}: {result.error}", file=sys.stderr)
    summary = {"status": result.status, **result.metrics}
    if args.json:
        print(json.dumps(summary))
    else:
        width = max(map(len, summary))
        for key, value in summary.items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")


def command_presets(args: argparse.Namespace) -> int:
    from idlab.presets import PRESETS

    if args.json:
        print(json.dumps([preset.as_json() for preset in PRESETS], indent=1))
        return 0
    for preset in PRESETS:
        request = preset.request
        grid = " × ".join(f"{name} [{', '.join(map(str, values))}]" for name, values in request["grid"].items())
        baseline = request["baseline"]
        print(f"{preset.id}  —  {preset.label}")
        print(f"    {preset.paper}")
        print(f"    {preset.as_json()['run_count']} runs: {grid} × seeds {request['seeds']}, baseline "
              f"{'individual (direct training)' if baseline is True else baseline}")
        picks = " ".join(f"--{name} {values[0]}" for name, values in request["grid"].items())
        source = " --from-run-stats FILE" if preset.is_template else ""
        print(f"    one run: idlab train --preset {preset.id} {picks}{source}")
    return 0


def command_worker(args: argparse.Namespace) -> int:
    from idlab.launchers.worker_command import command_worker as run_worker

    return run_worker(args)


def command_serve(args: argparse.Namespace) -> int:
    from idlab.launchers.serve import serve

    return serve(args.host, args.port, args.data_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idlab", description="Intrinsic Dimension Lab")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one run locally and print its final metrics",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--config", metavar="FILE", help="a JSON or YAML run config; flags override it")
    train.add_argument("--preset", metavar="ID", help="start from a paper preset's settings (`idlab presets`); "
                                                      "--config and flags override them, and each field the preset "
                                                      "sweeps needs a flag, e.g. --d 750")
    train.add_argument("--data-dir", help="folder holding the datasets (default: $IDLAB_DATA_DIR or ./idlab-data)")
    train.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                       help="download a missing dataset, verified (default: IDLAB_ALLOW_DOWNLOAD, on)")
    train.add_argument("--compile", choices=("auto", "always", "never"), default="auto",
                       help="torch.compile the training step: always, never, or auto — where it measures faster for "
                            "the run's length, compile time included (on a CPU it does not)")
    train.add_argument("--json", action="store_true", help="print the final metrics as one JSON line, no progress bar")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--stats-out", metavar="FILE", help="write the metrics and the statistics of P and θ_d as JSON")
    train.add_argument("--from-run-stats", metavar="FILE",
                       help="the --stats-out file of the run named by p_init from_run:<id>")
    add_config_flags(train)
    train.set_defaults(handler=command_train)

    presets = commands.add_parser("presets", help="list the paper presets (Li et al. 2018, Lam & Lee 2020)")
    presets.add_argument("--json", action="store_true", help="print them as JSON: experiment requests with their "
                                                             "settings, as GET /api/config/presets serves them")
    presets.set_defaults(handler=command_presets)

    from idlab.launchers.worker_command import add_worker_arguments

    serve = commands.add_parser("serve", help="start the lab: the API, a worker and the reaper, in one command",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address the API listens on; any but loopback (e.g. 0.0.0.0) needs IDLAB_API_TOKEN set, "
                            "and serves the names in IDLAB_ALLOWED_HOSTS besides the address or the machine's names")
    serve.add_argument("--port", type=int, default=8000, help="port the API listens on")
    serve.add_argument("--data-dir", help="the lab's folder: datasets, database, queue (default: $IDLAB_DATA_DIR "
                                          "or ./idlab-data)")
    serve.set_defaults(handler=command_serve)

    worker = commands.add_parser("worker", help="start a Celery worker that executes runs (binds no port)",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_worker_arguments(worker)
    worker.set_defaults(handler=command_worker)

    from idlab.launchers.data_command import add_data_commands
    from idlab.launchers.evaluate_command import add_evaluate_command
    from idlab.launchers.plugins_command import add_plugins_command

    add_data_commands(commands)
    add_evaluate_command(commands)
    add_plugins_command(commands)
    return parser


#: The lab's own packages: a module of theirs that is missing is a broken checkout, not a missing extra.
OWN_PACKAGES = ("idlab", "backend", "worker")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ModuleNotFoundError as missing:
        top = (missing.name or "").split(".")[0]
        if not top or top in OWN_PACKAGES:
            raise
        # A client-only install (`idlab[client]`) has the command but not the lab it starts.
        print(f"idlab {args.command}: needs {top}, which this installation lacks: install the lab with "
              f"pip install 'idlab[server,engine]' (a worker and `idlab serve` need both; the client only "
              f"'idlab[client]')", file=sys.stderr)
        return EXIT_MISSING_PACKAGE


if __name__ == "__main__":
    sys.exit(main())
