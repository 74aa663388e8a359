"""Query-string values read exactly as the OpenAPI document types them, not as pydantic's lax mode would.

pydantic's lax mode takes "1.0", " 5", "+5" and "1_0" as integers and "yes", "on" or "1" as booleans;
the document says integer and boolean, so a value is taken only in the form it documents. Each
validator goes last in its `Annotated`, so it runs before the constraints and the generated schema
keeps them (`minimum`, `maximum`).
"""

from __future__ import annotations

import re

from pydantic import BeforeValidator


def states(value: object) -> object:
    """`?state=A,B` as a list (a repeated parameter arrives joined the same way); empty is an empty list."""
    return ([] if value == "" else value.split(",")) if isinstance(value, str) else value


def _integer(value: object) -> object:
    if isinstance(value, str):
        if not re.fullmatch(r"-?[0-9]+", value):
            raise ValueError("must be a whole number, in decimal digits")
        return int(value)
    return value


def _boolean(value: object) -> object:
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError("must be true or false")
        return value == "true"
    return value


QUERY_INTEGER = BeforeValidator(_integer)
QUERY_BOOLEAN = BeforeValidator(_boolean)
