"""The lab's settings are read from the environment in one place, backend.domain.settings.Settings:
no other module of the lab reads an environment variable (the launchers write some, for the
processes they start; the notebook client, which runs outside the lab, reads its user's token)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READS = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[[^\]]+\](?!\s*=)|\bin os\.environ\b|getenv\(")
#: The notebook client's own default for its token ($IDLAB_API_TOKEN): a setting of the user, not of the lab.
ALLOWED = {"idlab/client.py"}


def test_only_settings_reads_the_environment():
    readers = []
    for package in ("idlab", "backend", "worker"):
        for path in sorted((REPO / package).rglob("*.py")):
            name = path.relative_to(REPO).as_posix()
            if name in ALLOWED:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if READS.search(line.split("#", 1)[0]):
                    readers.append(f"{name}:{number}: {line.strip()}")
    assert not readers, "read a setting through backend.domain.settings.Settings instead:\n" + "\n".join(readers)
