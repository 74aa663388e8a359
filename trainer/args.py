"""The trainer's arguments: the manifest's `trainer.args`, checked strictly before any training starts.

Pure Python (no torch): the Functions app imports this module to validate manifests at submit time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

_PREFIX = "trainer.args"


class ArgsError(ValueError):
    """The trainer arguments are invalid. `problems` names each bad argument (`trainer.args.<name>`) and what
    it expects, as (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))


@dataclass(frozen=True)
class TrainArgs:
    """Hyperparameters. `lr` is the single-process rate; the trainer scales it by the Horovod world size."""

    epochs: int = 5
    batch_size: int = 64  # per Horovod process and backward pass
    lr: float = 0.05
    momentum: float = 0.9
    warmup_epochs: int = 1  # the rate ramps linearly from lr to lr * world size over these epochs
    gradient_accumulation_steps: int = 1  # backward passes per optimizer step (and per gradient allreduce)
    fp16_allreduce: bool = False  # send gradients as float16: half the bytes on the wire
    mixed_precision: bool = False  # float16 autocast with loss scaling on a GPU, bfloat16 autocast on a CPU
    image_size: int = 32  # image-folder data is resized to image_size x image_size (digits stay 8 x 8)
    seed: int = 0


_TYPES: dict[str, type] = get_type_hints(TrainArgs)
_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "epochs": (lambda v: v > 0, "must be positive"),
    "batch_size": (lambda v: v > 0, "must be positive"),
    "lr": (lambda v: v > 0, "must be positive"),
    "momentum": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "warmup_epochs": (lambda v: v >= 0, "must be 0 or more"),
    "gradient_accumulation_steps": (lambda v: v > 0, "must be positive"),
    "image_size": (lambda v: 4 <= v <= 1024, "must be in [4, 1024]"),  # the model pools twice, halving each time
    "seed": (lambda v: 0 <= v < 2**32, "must be in [0, 2**32)"),  # what every RNG we seed accepts
}


def parse_args(raw: dict[str, Any]) -> TrainArgs:
    """Validate `raw` (a decoded JSON object) into `TrainArgs`; missing keys take their defaults.

    Raises `ArgsError` naming every unknown or ill-typed argument and every value out of range.
    """
    if not isinstance(raw, dict):
        raise ArgsError([(_PREFIX, f"expected a JSON object, got {type(raw).__name__}")])
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for name, value in raw.items():
        expected = _TYPES.get(name)
        if expected is None:
            problems.append((f"{_PREFIX}.{name}", f"unknown argument; known: {', '.join(sorted(_TYPES))}"))
            continue
        try:
            values[name] = _coerce(name, value, expected)
        except ValueError as exc:
            problems.append((f"{_PREFIX}.{name}", str(exc)))
    if problems:
        raise ArgsError(problems)
    return TrainArgs(**values)


def _coerce(name: str, value: object, expected: type) -> int | float | bool:
    """`value` as the argument `name` takes it; raises ValueError saying what is wrong with it."""
    if expected is bool:
        if not isinstance(value, bool):  # 0/1 or "true" would hide a typo in a manifest
            raise ValueError(f"expected bool (true or false), got {type(value).__name__} {value!r}")
        return value
    accepted = (int, float) if expected is float else (int,)
    # bool is a subclass of int, but `"epochs": true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise ValueError(f"expected {expected.__name__}, got {type(value).__name__} {value!r}")
    try:
        number: int | float = expected(value)  # an int is a fine float: 1 -> 1.0
    except OverflowError:  # an int too large for a float
        number = math.inf
    if isinstance(number, float) and not math.isfinite(number):  # JSON's NaN and Infinity, too
        raise ValueError(f"expected a finite number, got {value!r}")
    in_range, requirement = _RANGES[name]
    if not in_range(number):
        raise ValueError(f"{requirement}, got {value!r}")
    return number
