"""Budget-free settings -> per-step rates (hamr.algorithm.rates), against hand computations."""

import math

import pytest

from hamr.algorithm.rates import step_rates
from hamr.config import HamrConfig, MetaConfig


def test_per_example_half_life_is_in_visits_whatever_the_run_length():
    hp = HamrConfig(hardness_half_life=2.0)
    short, long = (step_rates(hp, trainer_lr=1e-4, steps_per_epoch=s, epochs=3) for s in (10, 10_000))
    assert short.gamma == long.gamma == pytest.approx(0.5**0.5)  # two visits halve an old value


def test_global_decay_half_life_is_in_epochs():
    hp = HamrConfig(hardness_half_life=0.5, ema_rule="global_decay")
    rates = step_rates(hp, trainer_lr=1e-4, steps_per_epoch=80, epochs=3)
    assert rates.gamma**40 == pytest.approx(0.5)  # half an epoch = 40 steps, each decays every score


def test_weight_net_lr_is_the_travel_over_the_meta_steps():
    hp = HamrConfig(weight_net_travel=2.0, meta=MetaConfig(every=4))
    rates = step_rates(hp, trainer_lr=1e-4, steps_per_epoch=75, epochs=3)
    assert rates.meta_steps == math.ceil(225 / 4) == 57  # steps 0, 4, ..., 224
    assert rates.weight_net_lr == pytest.approx(2.0 / 57)


def test_inner_lr_follows_the_model_lr_and_per_step_values_are_kept_as_given():
    assert step_rates(
        HamrConfig(inner_lr_ratio=5.0), trainer_lr=4e-5, steps_per_epoch=10, epochs=1
    ).inner_lr == pytest.approx(2e-4)  # the authors' classification ratio
    authors = HamrConfig(
        gamma=0.99,
        hardness_half_life=None,
        inner_lr=2e-4,
        inner_lr_ratio=None,
        weight_net_lr=1e-4,
        weight_net_travel=None,
    )
    rates = step_rates(authors, trainer_lr=1e-3, steps_per_epoch=7, epochs=9)
    assert (rates.gamma, rates.inner_lr, rates.weight_net_lr) == (0.99, 2e-4, 1e-4)
