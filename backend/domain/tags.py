"""Tags and notes of runs and experiments: their rules, and how tags are set, added, removed, filtered on
and counted.

A tag is a short label: 1 to 40 characters of ASCII letters, digits, spaces and `_ . : - /`, trimmed,
inner runs of spaces made one. Its spelling is kept as given, but tags are compared without regard to
case: `Baseline` and `baseline` are one tag (an object holds it once, in the spelling it was first
given; `?tag=baseline` finds both). ASCII only, so that the lower case used for comparing is the same
length and the same everywhere (Python's lower() of some Unicode letters grows). An object holds at
most MAX_TAGS tags.

Notes are free text of at most MAX_NOTES characters (lines, tabs and Markdown-ish punctuation
welcome; other control characters refused: Postgres stores no NUL). The dashboard shows them as
text, never as HTML.

Tags are rows (run_tags, experiment_tags), not a JSON column: see migration 0006.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from backend.domain.models import Experiment, ExperimentTag, Run, RunTag

MAX_TAG_LENGTH = 40
MAX_TAGS = 32
MAX_NOTES = 10_000
TAG_CHARACTERS = re.compile(r"^[A-Za-z0-9_.:/ -]+$")
#: Control characters other than tab, line feed and carriage return.
NOTES_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

Owner = Run | Experiment
TAG_RULE = (f"a tag is 1 to {MAX_TAG_LENGTH} characters: letters A-Z a-z, digits, spaces and _ . : - / "
            "(e.g. 'baseline', 'paper:fig-3', 'sweep/lr')")


def clean_tag(raw: str) -> str:
    """The tag as stored: trimmed, inner whitespace made one space; ValueError saying what to fix."""
    if not isinstance(raw, str):
        raise ValueError(f"{TAG_RULE}, not {type(raw).__name__}")
    tag = " ".join(raw.split())
    if not tag:
        raise ValueError(f"an empty tag: {TAG_RULE}")
    if len(tag) > MAX_TAG_LENGTH:
        raise ValueError(f"a tag of {len(tag)} characters is too long: at most {MAX_TAG_LENGTH} (put longer text "
                         "in the notes)")
    if not TAG_CHARACTERS.match(tag):
        bad = sorted({c for c in tag if not TAG_CHARACTERS.match(c)})
        shown = ", ".join(repr(c) for c in bad[:5])
        raise ValueError(f"{shown} cannot be in a tag: {TAG_RULE}")
    return tag


def tag_key(tag: str) -> str:
    """What tags are compared by (ASCII only, so as long as the tag)."""
    return tag.lower()


def clean_tags(raw: Iterable[str]) -> list[str]:
    """A set of tags as stored: each cleaned, the repeats (in any case) dropped, the first spelling kept;
    ValueError when more than MAX_TAGS remain."""
    tags: dict[str, str] = {}
    for value in raw:
        tag = clean_tag(value)
        tags.setdefault(tag_key(tag), tag)
    if len(tags) > MAX_TAGS:
        raise ValueError(f"{len(tags)} tags: at most {MAX_TAGS} per run or experiment")
    return list(tags.values())


def clean_notes(raw: str) -> str:
    """The notes as stored (as given); ValueError saying what to fix."""
    if len(raw) > MAX_NOTES:
        raise ValueError(f"notes of {len(raw)} characters are too long: at most {MAX_NOTES}")
    if (found := NOTES_FORBIDDEN.search(raw)) is not None:
        raise ValueError(f"notes hold the control character {found.group()!r} at {found.start()}: only text, "
                         "line breaks and tabs")
    return raw


def tags_of(owner: Owner) -> list[str]:
    """The object's tags, in the order of their keys (rows just added are not in the loaded order yet)."""
    return [row.tag for row in sorted(owner.tag_rows, key=lambda row: row.tag_key)]


def _row_class(owner: Owner) -> type[RunTag] | type[ExperimentTag]:
    return RunTag if isinstance(owner, Run) else ExperimentTag


def set_tags(owner: Owner, tags: list[str]) -> None:
    """Replace the object's tags by `tags` (cleaned by clean_tags). A tag kept keeps its row; one given in
    another spelling takes that spelling."""
    row_class, wanted = _row_class(owner), {tag_key(tag): tag for tag in tags}
    kept = []
    for row in owner.tag_rows:
        if row.tag_key in wanted:
            row.tag = wanted.pop(row.tag_key)
            kept.append(row)
    owner.tag_rows[:] = kept + [row_class(tag=tag, tag_key=key) for key, tag in wanted.items()]


def add_tag(owner: Owner, tag: str) -> bool:
    """Add a cleaned tag unless the object has it already (in any spelling): whether it was added;
    ValueError when the object already holds MAX_TAGS."""
    key = tag_key(tag)
    if any(row.tag_key == key for row in owner.tag_rows):
        return False
    if len(owner.tag_rows) >= MAX_TAGS:
        raise ValueError(f"it has {MAX_TAGS} tags already, the most a run or an experiment holds: remove one first")
    owner.tag_rows.append(_row_class(owner)(tag=tag, tag_key=key))
    return True


def remove_tag(owner: Owner, tag: str) -> bool:
    """Remove the tag (in any spelling): whether the object had it."""
    key = tag_key(tag)
    left = [row for row in owner.tag_rows if row.tag_key != key]
    removed = len(left) < len(owner.tag_rows)
    owner.tag_rows[:] = left
    return removed


def run_tag_conditions(tags: Iterable[str]) -> list[ColumnElement[bool]]:
    """Runs holding every one of the (cleaned) tags."""
    return [exists().where(RunTag.run_id == Run.id, RunTag.tag_key == tag_key(tag)) for tag in tags]


def experiment_tag_conditions(tags: Iterable[str]) -> list[ColumnElement[bool]]:
    """Experiments holding every one of the (cleaned) tags."""
    return [exists().where(ExperimentTag.experiment_id == Experiment.id, ExperimentTag.tag_key == tag_key(tag))
            for tag in tags]


def tags_in_use(session: Session, prefix: str = "", limit: int = 200) -> list[dict]:
    """[{"tag", "runs", "experiments"}]: every tag in use (whose key starts with `prefix`), the most used
    first, with the number of runs and of experiments holding it; its spelling is the most common one."""
    counts: dict[str, dict] = {}
    for row_class, owner_column, kind in ((RunTag, RunTag.run_id, "runs"),
                                          (ExperimentTag, ExperimentTag.experiment_id, "experiments")):
        query = (select(row_class.tag_key, row_class.tag, func.count(owner_column))
                 .group_by(row_class.tag_key, row_class.tag))
        if prefix:
            query = query.where(row_class.tag_key.startswith(tag_key(prefix), autoescape=True))
        for key, spelling, count in session.execute(query):
            entry = counts.setdefault(key, {"runs": 0, "experiments": 0, "spellings": {}})
            entry[kind] += count
            entry["spellings"][spelling] = entry["spellings"].get(spelling, 0) + count
    items = [{"tag": max(sorted(entry["spellings"]), key=entry["spellings"].get), "runs": entry["runs"],
              "experiments": entry["experiments"]} for entry in counts.values()]
    items.sort(key=lambda item: (-(item["runs"] + item["experiments"]), tag_key(item["tag"])))
    return items[:limit]
