"""`pip install 'idlab[client]'` into a fresh virtual environment brings the client and the contracts,
and none of the server's or the engine's packages: a notebook on a laptop can drive a lab on a GPU
server without installing torch, FastAPI, Celery or SQLAlchemy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.client.conftest import REPO

#: What only the server (FastAPI, SQLAlchemy, Celery) or the engine (torch) needs.
SERVER_AND_ENGINE = ("torch", "fastapi", "celery", "sqlalchemy", "alembic", "uvicorn", "pydantic-settings")

#: The files setuptools reads to build the package (pyproject's packages.find).
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "idlab", "backend", "worker")


@pytest.mark.timeout(900)
def test_the_client_extra_installs_no_server_or_engine_package(tmp_path):
    # A copy, so that building the package writes its build/ and egg-info there, not in the repository.
    source = tmp_path / "source"
    source.mkdir()
    for name in PACKAGE_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"

    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              f"{source}[client]"], capture_output=True, text=True, timeout=800)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True, timeout=120)
    installed = {package["name"].lower().replace("_", "-") for package in json.loads(listed.stdout)}
    assert {"idlab", "httpx", "pandas", "pydantic"} <= installed
    assert not installed & set(SERVER_AND_ENGINE), f"the client install brought {installed & set(SERVER_AND_ENGINE)}"

    # Run from tmp_path: the repository's own idlab/ must not shadow the installed one.
    check = ("import importlib.metadata as metadata, sys\n"
             "from idlab.client import Lab\n"
             "Lab('http://127.0.0.1:1').close()\n"
             f"absent = {SERVER_AND_ENGINE!r}\n"
             "present = [name for name in absent if any(d.metadata['Name'].lower() == name "
             "for d in metadata.distributions())]\n"
             "assert not present, present\n"
             "import idlab\n"
             "print(idlab.__file__)\n")
    imported = subprocess.run([str(python), "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert str(venv) in imported.stdout, f"idlab imported from {imported.stdout.strip()}, not the fresh install"

    # The `idlab` command comes with it; what needs the server says which install it needs.
    serve = subprocess.run([str(venv / "bin" / "idlab"), "serve"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert serve.returncode == 3 and "pip install 'idlab[server,engine]'" in serve.stderr, serve.stderr[-2000:]
    assert "Traceback" not in serve.stderr
