"""`idlab data list` and `idlab data fetch NAME`: the datasets of a data directory, checked and fetched.

    idlab data list [--data-dir DIR] [--json]     each dataset: present, missing or corrupt, and its folder
    idlab data fetch mnist [cifar10 …]            download what is missing from the mirrors, verified

Both read the one list of dataset files (`idlab.dataset_files.CATALOG`) and import no torch, so
they answer in a second on any machine, the lab's or a laptop preparing an offline one.
"""

from __future__ import annotations

import argparse
import json
import sys

from idlab.dataset_download import DownloadError, download_dataset
from idlab.dataset_files import CATALOG, DatasetCorrupt, check_dataset

EXIT_PROBLEM = 1


def add_data_commands(commands) -> None:
    data = commands.add_parser("data", help="check and fetch the datasets of the data directory")
    actions = data.add_subparsers(dest="data_command", required=True)
    data_dir_help = "folder holding the datasets (default: $IDLAB_DATA_DIR or ./idlab-data)"

    listing = actions.add_parser("list",
                                 help="each dataset: present, missing or corrupt (content verified), its folder")
    listing.add_argument("--data-dir", help=data_dir_help)
    listing.add_argument("--json", action="store_true", help="print one JSON object per dataset")
    listing.set_defaults(handler=command_list)

    fetch = actions.add_parser("fetch", help="download the missing files of datasets from the mirrors, verified")
    fetch.add_argument("names", nargs="+", metavar="NAME", choices=list(CATALOG),
                       help=f"the datasets: {', '.join(CATALOG)}")
    fetch.add_argument("--data-dir", help=data_dir_help)
    fetch.add_argument("--quiet", action="store_true", help="no progress line")
    fetch.set_defaults(handler=command_fetch)


def _settings(args: argparse.Namespace):
    from backend.domain.settings import Settings

    return Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))


def command_list(args: argparse.Namespace) -> int:
    root = _settings(args).data_dir
    states = [check_dataset(name, root) for name in CATALOG]
    for state in states:
        if args.json:
            print(json.dumps({"name": state.name, "state": state.state, "folder": str(state.directory.resolve()),
                              "problems": list(state.problems)}))
            continue
        size = f" — {CATALOG[state.name].served_bytes / 1e6:.0f} MB to download" if state.state == "missing" else ""
        print(f"{state.name:<14} {state.state:<8} {state.directory.resolve()}{size}")
        if state.state == "corrupt":
            for problem in state.problems:
                print(f"    {problem}")
    if any(state.state == "corrupt" for state in states):
        if not args.json:
            print("A corrupt file is not the published one: delete it and run `idlab data fetch NAME`.",
                  file=sys.stderr)
        return EXIT_PROBLEM
    return 0


def command_fetch(args: argparse.Namespace) -> int:
    settings = _settings(args)
    root = settings.data_dir
    for name in dict.fromkeys(args.names):
        bar = DownloadLine(name, args.quiet)
        try:
            fetched = download_dataset(name, root, settings.dataset_mirrors, on_progress=bar)
        except (DownloadError, DatasetCorrupt) as problem:
            bar.close()
            print(str(problem), file=sys.stderr)
            return EXIT_PROBLEM
        bar.close()
        state = check_dataset(name, root)
        where = state.directory.resolve()
        if state.state != "present":
            print(f"{name}: {state.state} in {where}", file=sys.stderr)
            for problem in state.problems:
                print(f"    {problem}", file=sys.stderr)
            print("Delete the files listed and fetch again.", file=sys.stderr)
            return EXIT_PROBLEM
        print(f"{name}: present in {where}"
              + (f" (downloaded {', '.join(fetched)})" if fetched else " (nothing to fetch)"))
    return 0


class DownloadLine:
    """download_dataset's on_progress(done, total) as a tqdm line on stderr, in bytes; shown from the first byte
    (nothing appears when nothing is downloaded)."""

    def __init__(self, name: str, quiet: bool = False):
        self.name, self.quiet, self.bar = name, quiet, None

    def __call__(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(desc=f"downloading {self.name}", total=total, unit="B", unit_scale=True,
                            unit_divisor=1024, file=sys.stderr, dynamic_ncols=True)
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
