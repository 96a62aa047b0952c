"""`idlab evaluate FILE`: a run's model file rebuilt and evaluated on the test set it was trained against.

    idlab evaluate idlab-run-12-d750.idlab-model                  on the CPU, data from $IDLAB_DATA_DIR
    idlab evaluate run.idlab-model --device cuda --json

The file holds the run's config, seed and trained tensors (`GET /api/runs/{id}/model`, the run
page's "Model file" link); θ_0, P and φ are redrawn from the seed (worker/subspace/export.py).
It prints the test accuracy and loss, next to the accuracy the run recorded, and exits 1 when a
file is refused (changed after export, another format, or an engine that draws differently).
"""

from __future__ import annotations

import argparse
import json
import sys

EXIT_REFUSED = 1


def add_evaluate_command(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="rebuild a run from its model file and evaluate it on its test set")
    evaluate.add_argument("file", help="a model file (GET /api/runs/{id}/model)")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    evaluate.add_argument("--data-dir", help="folder holding the datasets (default: $IDLAB_DATA_DIR or ./idlab-data)")
    evaluate.add_argument("--json", action="store_true", help="print the result as one JSON object")
    evaluate.set_defaults(handler=command_evaluate)


def command_evaluate(args: argparse.Namespace) -> int:
    from backend.domain.settings import Settings
    from worker.evaluation import measure
    from worker.subspace.data import DatasetCorrupt, DatasetMissing, DownloadError
    from worker.subspace.export import ModelFileError, load, read

    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    try:
        data = read(args.file)
        config, _, _ = load(data)                       # refuses a changed file before any data is read
        answer = measure(data, args.device, config, settings)
    except (OSError, ModelFileError, DatasetMissing, DatasetCorrupt, DownloadError) as problem:
        print(f"idlab evaluate: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print(json.dumps(answer))
        return 0
    recorded = answer["recorded_test_acc"]
    recorded_text = "" if recorded is None else f" (recorded: {recorded:.4f})"
    print(f"test accuracy {answer['test_acc']:.4f}{recorded_text}, test loss {answer['test_loss']:.4f} on "
          f"{answer['test_examples']:,} {config.dataset} test examples, {answer['device']}")
    print(f"model file {len(data):,} bytes against θ_D's {answer['network_bytes']:,}: "
          f"{answer['compression']:,.0f}× smaller")
    return 0
