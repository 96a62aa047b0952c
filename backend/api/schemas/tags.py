"""Tags and notes as the API takes and shows them (the rules: backend/domain/tags.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from backend.domain import tags as tag_rules
from backend.domain.models import Experiment, Run

Tag = Annotated[str, Field(max_length=1000, description=tag_rules.TAG_RULE + "; compared without regard to case."),
                AfterValidator(tag_rules.clean_tag)]
Tags = Annotated[list[Tag], Field(max_length=1000), AfterValidator(tag_rules.clean_tags)]
Notes = Annotated[str, Field(max_length=100_000), AfterValidator(tag_rules.clean_notes)]

TAGS_DESCRIPTION = (f"Its tags (at most {tag_rules.MAX_TAGS}), in alphabetical order of their lower case. "
                    "Filter the lists with `?tag=`.")
NOTES_DESCRIPTION = f"Free text (at most {tag_rules.MAX_NOTES} characters), shown as text."


class ObjectPatch(BaseModel):
    """PATCH /api/runs/{id} and /api/experiments/{id}: what can change after creation. Every field is
    optional (at least one is needed); those left out are left as they are."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"archived": True}, {"tags": ["baseline", "paper:fig-3"]}, {"notes": "lr 1e-3 diverged at d=50; retry"}]})

    archived: bool | None = Field(None, strict=True, description="true hides it from the lists (nothing is "
                                                                 "deleted); false shows it again.")
    tags: Tags | None = Field(None, description=(
        f"Replaces its tags with these ([] removes them all): at most {tag_rules.MAX_TAGS}, repeats (in any case) "
        "counted once. To add or remove one tag, POST …/tags or DELETE …/tags/{tag}."))
    notes: Notes | None = Field(None, description=f"Replaces its notes (\"\" clears them); {tag_rules.MAX_NOTES} "
                                                  "characters at most.")

    @model_validator(mode="after")
    def _something(self) -> ObjectPatch:
        if not self.model_fields_set:
            raise ValueError("nothing to change: send at least one of archived, tags, notes")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null: leave it out to keep it as it is")
        return self

    def apply_to(self, owner: Run | Experiment) -> None:
        if self.archived is not None:
            owner.archived = self.archived
        if self.tags is not None:
            tag_rules.set_tags(owner, self.tags)
        if self.notes is not None:
            owner.notes = self.notes


class TagIn(BaseModel):
    """POST /api/runs/{id}/tags and /api/experiments/{id}/tags: one tag to add."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tag": "baseline"}]})

    tag: Tag


class TagCount(BaseModel):
    tag: str = Field(description="Its most common spelling.")
    runs: int = Field(description="Runs holding it (archived ones included).")
    experiments: int = Field(description="Experiments holding it (archived ones included).")


class TagsOut(BaseModel):
    items: list[TagCount]
