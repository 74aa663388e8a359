"""The trainer's arguments (the manifest's `trainer.args`): defaults, types, ranges, errors naming the argument."""

from __future__ import annotations

import pytest

from trainer.args import ArgsError, TrainArgs, parse_args


def test_missing_arguments_take_their_defaults_and_ints_are_fine_floats():
    assert parse_args({}) == TrainArgs()
    args = parse_args({"epochs": 3, "lr": 1, "momentum": 0, "mixed_precision": True})
    assert (args.epochs, args.lr, args.momentum, args.mixed_precision) == (3, 1.0, 0.0, True)
    assert isinstance(args.lr, float)


@pytest.mark.parametrize(
    "raw, problem",
    [
        ({"epochs": "five"}, "trainer.args.epochs: expected int, got str 'five'"),
        ({"epochs": True}, "trainer.args.epochs: expected int, got bool True"),
        ({"batch_size": 8.0}, "trainer.args.batch_size: expected int, got float 8.0"),
        ({"lr": "0.1"}, "trainer.args.lr: expected float, got str '0.1'"),
        ({"lr": float("nan")}, "trainer.args.lr: expected a finite number, got nan"),
        ({"fp16_allreduce": 1}, "trainer.args.fp16_allreduce: expected bool (true or false), got int 1"),
        ({"mixed_precision": "yes"}, "trainer.args.mixed_precision: expected bool (true or false), got str 'yes'"),
        ({"epochs": 0}, "trainer.args.epochs: must be positive, got 0"),
        ({"batch_size": -1}, "trainer.args.batch_size: must be positive, got -1"),
        ({"lr": 0.0}, "trainer.args.lr: must be positive, got 0.0"),
        ({"momentum": 1}, "trainer.args.momentum: must be in [0, 1), got 1"),
        ({"warmup_epochs": -1}, "trainer.args.warmup_epochs: must be 0 or more, got -1"),
        ({"gradient_accumulation_steps": 0}, "trainer.args.gradient_accumulation_steps: must be positive, got 0"),
        ({"image_size": 2}, "trainer.args.image_size: must be in [4, 1024], got 2"),
        ({"seed": -1}, "trainer.args.seed: must be in [0, 2**32), got -1"),
    ],
)
def test_a_bad_value_is_named_with_what_the_argument_expects(raw, problem):
    with pytest.raises(ArgsError) as err:
        parse_args(raw)
    assert [": ".join(p) for p in err.value.problems] == [problem]


def test_an_unknown_argument_is_named_with_every_known_one():
    with pytest.raises(ArgsError) as err:
        parse_args({"dropout": 0.5})
    assert [": ".join(p) for p in err.value.problems] == [
        "trainer.args.dropout: unknown argument; known: batch_size, epochs, fp16_allreduce, "
        "gradient_accumulation_steps, image_size, lr, mixed_precision, momentum, seed, warmup_epochs"
    ]


def test_every_problem_is_reported_at_once():
    with pytest.raises(ArgsError) as err:
        parse_args({"epochs": "x", "gpus": 2, "lr": 0.1})
    assert [field for field, _ in err.value.problems] == ["trainer.args.epochs", "trainer.args.gpus"]


def test_a_value_that_is_not_an_object_is_refused():
    with pytest.raises(ArgsError, match="expected a JSON object, got list"):
        parse_args([1, 2])  # type: ignore[arg-type]
