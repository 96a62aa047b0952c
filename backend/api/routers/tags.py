"""/api/tags: the tags in use, for autocompletion; and what the runs and experiments routers share to
add, remove and filter on tags (backend/domain/tags.py holds the rules)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.api.deps import SessionDep
from backend.api.errors import reject
from backend.api.schemas.tags import TagsOut
from backend.domain import tags
from backend.domain.models import Experiment, Run
from backend.domain.validation import echo, error

router = APIRouter(prefix="/tags", tags=["tags"])

TagFilter = Annotated[list[str] | None, Query(
    max_length=tags.MAX_TAGS, description="Only those holding every one of these tags (repeat the parameter), "
                                          "compared without regard to case.")]


def checked_tag_filter(raw: list[str] | None) -> list[str]:
    """The `tag` query parameters, cleaned; 422 naming each that is no tag."""
    cleaned, errors = [], []
    for value in raw or []:
        try:
            cleaned.append(tags.clean_tag(value))
        except ValueError as exc:
            errors.append(error(("query", "tag"), str(exc), input_=echo(value)))
    if errors:
        raise reject(errors)
    return cleaned


def checked_path_tag(raw: str) -> str:
    try:
        return tags.clean_tag(raw)
    except ValueError as exc:
        raise reject([error(("path", "tag"), str(exc), input_=echo(raw))]) from None


def commit_tags(session: Session, owner: Run | Experiment) -> None:
    """Commit a change of tags; 409 when a concurrent request gave the object the same tag first."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        what = "run" if isinstance(owner, Run) else "experiment"
        raise HTTPException(409, f"the tags of {what} {owner.id} changed meanwhile: try again") from None


def add_tag(session: Session, owner: Run | Experiment, tag: str) -> None:
    """Add the tag (nothing changes when it has it, in any case); 422 when it holds the most tags already."""
    try:
        added = tags.add_tag(owner, tag)
    except ValueError as exc:
        raise reject([error(("body", "tag"), str(exc), input_=echo(tag))]) from None
    if added:
        commit_tags(session, owner)


def remove_tag(session: Session, owner: Run | Experiment, raw: str) -> None:
    """Remove the tag (in any case); nothing changes when it does not have it."""
    if tags.remove_tag(owner, checked_path_tag(raw)):
        session.commit()


@router.get("", response_model=TagsOut, summary="The tags in use")
def list_tags(
    session: SessionDep,
    prefix: Annotated[str, Query(max_length=tags.MAX_TAG_LENGTH, description=(
        "Only the tags starting with this (in any case): what a person has typed so far."))] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict:
    """Every tag held by a run or an experiment (archived ones included), the most used first, with how
    many runs and experiments hold it."""
    return {"items": tags.tags_in_use(session, prefix.strip(), limit)}
