"""`idlab plugins`: the models and datasets this environment offers — built-ins and plugins — and broken plugins."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_plugins_command(commands: Any) -> None:
    parser = commands.add_parser("plugins", help="list the models and datasets installed: built-ins and plugins "
                                                 "(entry-point groups idlab.models, idlab.datasets)")
    parser.add_argument("--json", action="store_true",
                        help="print them as JSON, as GET /api/config/plugins serves them")
    parser.set_defaults(handler=command_plugins)


def command_plugins(args: argparse.Namespace) -> int:
    """Print what is installed; exit 1 when an entry point could not be registered (its error is printed)."""
    from idlab.plugins import catalogue

    found = catalogue()
    if args.json:
        print(json.dumps(found, indent=1))
        return 1 if found["broken"] else 0
    for kind in ("models", "datasets"):
        print(f"{kind}:")
        width = max(len(entry["name"]) for entry in found[kind])
        for entry in found[kind]:
            origin = "built in" if entry["source"] == "built-in" else f"{entry['package']} {entry['version']}"
            print(f"  {entry['name']:<{width}}  {origin:<28}  {entry['description']}")
            for warning in entry["warnings"]:
                print(f"  {'':<{width}}  warning: {warning}")
    for broken in found["broken"]:
        print(f"not registered: {broken['group']} {broken['name']!r} from {broken['package']} {broken['version']}: "
              f"{broken['error']}", file=sys.stderr)
    return 1 if found["broken"] else 0
