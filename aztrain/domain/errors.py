"""Exceptions that carry the data a caller needs to act on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class AztrainError(Exception):
    """Base of every error the control plane raises on purpose."""


class ConfigError(AztrainError):
    """A setting is missing or invalid."""

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


#: The field of a problem with the document as a whole, and of one that is not YAML or JSON at all.
DOCUMENT = "(document)"
SYNTAX = "(syntax)"


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with a manifest: the field at fault (a dotted path, or `DOCUMENT`/`SYNTAX`) and the fix."""

    field: str
    message: str

    def __str__(self) -> str:
        return self.message if self.field in (DOCUMENT, SYNTAX) else f"{self.field}: {self.message}"


class ManifestError(AztrainError):
    """A manifest was rejected. `problems` lists each field and how to fix it."""

    def __init__(self, problems: Sequence[FieldProblem], *, source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        where = f" ({source})" if source else ""
        super().__init__(f"invalid manifest{where}: " + "; ".join(str(p) for p in problems))

    @classmethod
    def at(cls, field: str, message: str) -> ManifestError:
        """A rejection for one problem."""
        return cls([FieldProblem(field, message)])


class NotFound(AztrainError):
    """A run or job the caller named does not exist."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class DataChanged(AztrainError):
    """A blob in a run's snapshot was rewritten or deleted before the run read it."""

    def __init__(self, container: str, name: str) -> None:
        super().__init__(f"{container}/{name} changed after the run's data snapshot was taken")
        self.container = container
        self.name = name


class ConcurrencyError(AztrainError):
    """An ETag-conditional write lost a race; re-read and re-decide."""

    def __init__(self, entity: str) -> None:
        super().__init__(f"{entity} was modified concurrently")
        self.entity = entity


class InvalidTransition(AztrainError):
    """A user asked for something the run's current state does not allow (e.g. cancel a finished run)."""

    def __init__(self, run_id: str, state: str, action: str) -> None:
        super().__init__(f"run {run_id} is {state}; cannot {action}")
        self.run_id = run_id
        self.state = state
        self.action = action


class BackendError(AztrainError):
    """The compute backend failed in a way that retrying later may fix."""


class Forbidden(AztrainError):
    """The caller is signed in but may not do this; `missing` names what would let them (a role, a team)."""

    def __init__(self, message: str, *, missing: str) -> None:
        super().__init__(message)
        self.missing = missing
