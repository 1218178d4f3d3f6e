"""HAMR's per-step rates from budget-free settings (or the authors' per-step constants as given).

The authors' constants (EMA decay 0.99 per step, weight-net Adam lr 1e-4 per meta step) were set
for runs of about 10^4 steps; at 200 steps they leave h and f_θ where they started. A half-life in
visits or epochs, a weight-net "travel" (lr x meta steps) and an inner lr relative to the model's
mean the same at any run length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hamr.algorithm.hardness import decay_for_half_life


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Optimizer steps of an epoch that visits ``examples`` examples in batches of ``batch_size``
    (the last batch may be smaller)."""
    return math.ceil(examples / batch_size)


@dataclass(frozen=True)
class StepRates:
    gamma: float  # hardness EMA decay per application (a visit: per_example; a training step: global_decay)
    inner_lr: float  # alpha of the virtual step
    weight_net_lr: float  # Adam lr of f_θ per meta step
    meta_steps: int  # meta steps the run will take


def step_rates(hp, *, trainer_lr: float, steps_per_epoch: int, epochs: int) -> StepRates:
    """``hp`` a :class:`hamr.config.HamrConfig`; ``steps_per_epoch`` the training steps of one
    epoch (batches drawn), ``epochs`` the run's epochs (may be fractional). Per-step values given in ``hp`` are
    used as they are; otherwise:

    - γ = 0.5^(1/half_life), the half-life in visits (per_example) or in epochs x steps per epoch
      (global_decay, where every step decays every score);
    - α = inner_lr_ratio x trainer_lr;
    - weight-net lr = weight_net_travel / meta steps, meta steps = ceil(steps / meta.every).
    """
    # rounded first: a fractional ``epochs`` (a Trainer's max_steps) must not turn 9.000000000000002 into 10
    meta_steps = math.ceil(round(steps_per_epoch * epochs, 6) / hp.meta.every)
    if hp.gamma is not None:
        gamma = hp.gamma
    else:
        applications = hp.hardness_half_life * (steps_per_epoch if hp.ema_rule == "global_decay" else 1)
        gamma = decay_for_half_life(applications)
    inner_lr = hp.inner_lr if hp.inner_lr is not None else hp.inner_lr_ratio * trainer_lr
    weight_net_lr = hp.weight_net_lr if hp.weight_net_lr is not None else hp.weight_net_travel / meta_steps
    return StepRates(gamma=gamma, inner_lr=inner_lr, weight_net_lr=weight_net_lr, meta_steps=meta_steps)
