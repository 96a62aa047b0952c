"""Plugin packages for the tests, installed for real: the example package built and installed with pip into a
folder of its own, and hand-written distributions (a .dist-info with METADATA and entry_points.txt beside their
module) for the plugins a test needs broken or odd. Neither touches the lab's environment: a folder is put on
sys.path (this process) and PYTHONPATH (the processes a test starts), and discovery is run again."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from idlab import plugins

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "idlab-plugin-example"


def install_example(target: Path) -> Path:
    """`pip install --no-deps --target target` of the example package (built from a copy, offline); returns target."""
    source = target.parent / f"{target.name}-source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    return target


def write_distribution(folder: Path, package: str, version: str, entry_points: dict[str, dict[str, str]],
                       modules: dict[str, str] | None = None) -> Path:
    """A distribution as pip leaves it in a --target folder: <name>-<version>.dist-info (METADATA,
    entry_points.txt) and its modules (name → source, dedented); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / f"{package.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    sections = [f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items())
                for group, entries in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(sections))
    for name, source in (modules or {}).items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return folder


@contextlib.contextmanager
def plugins_installed(*folders: Path) -> Iterator[plugins.Registry]:
    """The plugins in `folders` registered in this process for the block; discovered again (without them) after."""
    added = [str(folder) for folder in folders]
    sys.path[:0] = added
    try:
        yield plugins.reload()
    finally:
        for path in added:
            sys.path.remove(path)
        for name in [m for m in sys.modules if m.startswith(("idlab_plugin_example", "plugin_fixture_"))]:
            del sys.modules[name]
        plugins.reload()
