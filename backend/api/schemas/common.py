"""Shapes shared by several resources: pages of a list, the run-config field as documented."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field, WithJsonSchema

#: Largest id a client may name: ids are 64-bit integers (a larger one is a 422, not a database error).
MAX_ID = 2**63 - 1

#: A run configuration as it travels in JSON. Validated by idlab.config.RunConfig inside the
#: handlers (with the server's dense-P budget), documented in OpenAPI as RunConfig.
# (allOf: a bare $ref would make pydantic look the model up among its own definitions.)
RunConfigJSON = Annotated[dict[str, Any], WithJsonSchema({"allOf": [{"$ref": "#/components/schemas/RunConfig"}]})]

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a list: `items` from `offset`, at most `limit`, out of `total` matches."""

    items: list[Item]
    total: int = Field(description="Number of matches over all pages.")
    limit: int
    offset: int


