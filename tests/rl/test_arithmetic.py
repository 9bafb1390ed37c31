"""The addition task's batches: seeded, in range, and with `balance_sums` every sum equally often;
the learning-rate schedules."""

import collections

import pytest

from rl.envs.arithmetic import AdditionDataset
from rl.train import RLConfig, learning_rate


def test_balanced_batches_ask_every_sum_equally_often_and_repeat():
    dataset = AdditionDataset(None, groups=10, group_size=4, max_operand=2, seed=5, balance_sums=True)
    for index in range(20):
        problems = dataset.problems(index)
        assert all(0 <= a <= 2 and 0 <= b <= 2 for a, b in problems)
        assert collections.Counter(a + b for a, b in problems) == {s: 2 for s in range(5)}
        assert dataset.problems(index) == problems
    # the problems behind each sum vary from batch to batch
    assert len({tuple(dataset.problems(i)) for i in range(20)}) > 10


def test_uniform_batches_favour_the_middle_sums():
    dataset = AdditionDataset(None, groups=900, group_size=1, max_operand=2, seed=0)
    sums = collections.Counter(a + b for a, b in dataset.problems(0))
    assert sums[2] > 2 * sums[0] and sums[2] > 2 * sums[4]


def test_linear_schedule_decays_to_zero_at_the_end():
    config = RLConfig(base_model="m", log_dir=None, steps=10, learning_rate=1e-3, lr_schedule="linear")
    assert [round(learning_rate(config, s), 6) for s in (0, 5, 9)] == [1e-3, 5e-4, 1e-4]
    assert learning_rate(RLConfig(base_model="m", log_dir=None, steps=10, learning_rate=1e-3), 9) == 1e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        learning_rate(RLConfig(base_model="m", log_dir=None, steps=10, learning_rate=1e-3, lr_schedule="cosine"), 0)


def test_warmup_rises_to_the_rate_then_the_schedule_takes_over():
    config = RLConfig(base_model="m", log_dir=None, steps=10, learning_rate=1e-3, lr_warmup_steps=4, lr_schedule="linear")
    rates = [learning_rate(config, s) for s in range(10)]
    assert rates[:4] == pytest.approx([0.25e-3, 0.5e-3 * 0.9, 0.75e-3 * 0.8, 1e-3 * 0.7])
    assert rates[4:] == pytest.approx([1e-3 * (1 - s / 10) for s in range(4, 10)])
