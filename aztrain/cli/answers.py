"""Reading the API's JSON answers as `aztrain.api` models: what the client returns instead of dicts.

Fields a newer API adds are left out before validating (the models forbid unknown fields, as the
server's contract does); a field this CLI needs and the answer lacks is an `UnexpectedAnswer` naming it.
"""

from __future__ import annotations

from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from aztrain.domain.errors import AztrainError

M = TypeVar("M", bound=BaseModel)


class UnexpectedAnswer(AztrainError):
    """The API answered with a document this CLI cannot read: the two are of different versions."""


def parse_answer(model: type[M], answer: Any, *, path: str) -> M:
    """`answer` as `model`, fields it does not declare left out; `UnexpectedAnswer` naming what does not fit."""
    try:
        return model.model_validate(known_fields(model, answer))
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        message = f"the API's answer to /api/{path} is not what this CLI expects ({wrong}); are both the same version?"
        raise UnexpectedAnswer(message) from None


def known_fields(model: type[BaseModel], data: Any) -> Any:
    """`data` holding only the keys `model` declares, at every depth, so a newer API's additions are ignored."""
    if not isinstance(data, dict) or model.model_config.get("extra") == "allow":
        return data
    kept = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in data:
            continue
        value = data[key]
        nested = _models_in(field.annotation)
        if len(nested) == 1:
            inner = nested[0]
            value = [known_fields(inner, v) for v in value] if isinstance(value, list) else known_fields(inner, value)
        kept[key] = value
    return kept


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation holds (`RunView | None`, `list[TransitionView]`, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [found for arg in get_args(annotation) for found in _models_in(arg)]
