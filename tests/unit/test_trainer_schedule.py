"""The learning rate: scaled by the world size, reached by a linear warm-up, then a cosine decay."""

from __future__ import annotations

import itertools

import pytest

from trainer.args import TrainArgs
from trainer.loop import learning_rate


def test_it_ramps_from_the_single_process_rate_to_world_size_times_it_over_the_warm_up():
    args = TrainArgs(lr=0.1, epochs=10, warmup_epochs=2)
    rates = [learning_rate(args, world_size=4, step=step, steps_per_epoch=10) for step in range(100)]
    assert rates[0] == pytest.approx(0.1)
    assert rates[10] == pytest.approx(0.1 + 0.3 / 2)
    assert rates[20] == pytest.approx(0.4)  # the peak: 4 processes, 4 times the batch
    assert all(a < b for a, b in itertools.pairwise(rates[:21]))
    assert all(a > b for a, b in itertools.pairwise(rates[20:]))
    assert 0 < rates[-1] < 0.01


def test_one_process_without_warm_up_starts_at_the_given_rate():
    args = TrainArgs(lr=0.05, epochs=3, warmup_epochs=0)
    assert learning_rate(args, world_size=1, step=0, steps_per_epoch=23) == pytest.approx(0.05)
