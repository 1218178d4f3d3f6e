"""The training loop's numerical guard: non-finite steps are skipped, counted, and abort the run."""

from __future__ import annotations

import pytest
import torch

from hamr.data.encode import EncodedSplit
from hamr.loop import BaselineMethod, NumericalError, fit
from hamr.losses import CrossEntropyLoss
from tests.algorithm.test_meta_step import tiny_model
from tests.test_train import train_cli


class PoisonedLoss(CrossEntropyLoss):
    """Cross-entropy, except that the listed calls (0-based) give NaN."""

    def __init__(self, poisoned: set[int]):
        super().__init__()
        self.poisoned, self.calls = poisoned, 0

    def forward(self, logits, labels):
        loss = super().forward(logits, labels)
        self.calls += 1
        return loss * float("nan") if self.calls - 1 in self.poisoned else loss


class PoisonedMethod(BaselineMethod):
    """Cross-entropy, except that the listed steps (0-based) have a NaN loss."""

    def __init__(self, poisoned: set[int]):
        super().__init__(PoisonedLoss(poisoned), "ce", torch.device("cpu"))


def data(n=40, length=6):
    g = torch.Generator().manual_seed(0)
    features = [
        {
            "input_ids": torch.randint(1, 50, (length,), generator=g),
            "attention_mask": torch.ones(length, dtype=torch.long),
            "labels": int(torch.randint(0, 3, (1,), generator=g)),
            "index": i,
        }
        for i in range(n)
    ]
    return EncodedSplit(features, 0)


def collate(features):
    return {
        k: torch.stack([f[k] for f in features])
        if k in ("input_ids", "attention_mask")
        else torch.tensor([f[k] for f in features])
        for k in features[0]
    }


def run_fit(method, max_skip_share=0.2, epochs=2, dev_curve=None, snapshots=None, checkpointer=None, on_dev=None):
    """``snapshots``: a list that receives a copy of the model's state at each dev evaluation;
    ``on_dev``: called with the evaluation's number (1, 2, ...) at each dev evaluation."""
    model = tiny_model().float().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    scripted = iter(dev_curve or [0.0] * epochs)

    calls = []

    def evaluate_dev():
        calls.append(1)
        if on_dev is not None:
            on_dev(len(calls))
        if snapshots is not None:
            snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {"macro_f1": next(scripted), "micro_f1": 0.0}

    result = fit(
        model,
        method,
        data(),
        collate,
        optimizer,
        None,
        epochs=epochs,
        batch_size=4,
        grad_clip=1.0,
        seed=0,
        evaluate_dev=evaluate_dev,
        log_metrics=lambda *a: None,
        progress_bar=False,
        max_skip_share=max_skip_share,
        min_steps_before_abort=10,
        checkpointer=checkpointer,
    )
    return result, model, before


def test_a_non_finite_step_is_skipped_and_counted_and_training_goes_on():
    result, model, before = run_fit(PoisonedMethod({3}))
    assert result.steps == 20 and result.skipped_steps == 1
    assert result.history[-1]["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_best_epoch_is_the_first_with_the_highest_dev_score():
    snapshots = []
    result, model, _ = run_fit(
        BaselineMethod(CrossEntropyLoss(), "ce", torch.device("cpu")),
        epochs=4,
        dev_curve=[0.2, 0.5, 0.5, 0.3],
        snapshots=snapshots,
    )
    assert result.best_epoch == 2 and result.best_dev_scores["macro_f1"] == 0.5
    assert result.last_dev_scores["macro_f1"] == 0.3
    # the kept state is the model as it was scored after epoch 2 (not 3, its tie, nor the final one)
    same = [all(torch.equal(result.best_state[k], v) for k, v in snapshot.items()) for snapshot in snapshots]
    assert same == [False, True, False, False]


# torch warns when the schedule steps before any optimiser step: here that is the point
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_a_skipped_step_leaves_the_model_and_optimizer_untouched():
    model = tiny_model().float().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    from hamr.loop import train_step

    before = [p.detach().clone() for p in model.parameters()]
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / 10)
    assert train_step(model, PoisonedMethod({0}), collate(data(4).features), optimizer, schedule, 1.0) is None
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters()) and not optimizer.state
    # the schedule still advances: a run's lr schedule keeps its length whatever was skipped
    assert schedule.last_epoch == 1 and optimizer.param_groups[0]["lr"] == pytest.approx(0.9e-3)


def test_too_many_skipped_steps_abort_with_the_count():
    with pytest.raises(NumericalError, match=r"3 of \d+ training steps had a non-finite loss"):
        run_fit(PoisonedMethod({1, 2, 3, 4}), max_skip_share=0.2)


@pytest.mark.slow
def test_an_absurd_learning_rate_aborts_the_run_with_one_line(tmp_path, data_dir):
    proc = train_cli(
        "debug=smoke",
        "model=tiny_random",
        "trainer.lr=1e8",
        "dataset.max_train_examples=200",
        f"paths.results_dir={tmp_path}",
        "trainer.progress_bar=false",
        data_dir=data_dir,
    )
    assert proc.returncode != 0
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "training steps had a non-finite loss or gradient" in error
    assert "trainer.max_skip_share" in error and "lower trainer.lr" in error
    assert "non-finite step skipped" in proc.stdout + proc.stderr  # the statistics logged at each skip
    assert not list(tmp_path.glob("**/metrics.json"))


def test_a_stop_signal_during_the_last_dev_evaluation_stops_the_run_with_its_checkpoint(tmp_path):
    """SIGTERM while the last epoch's dev set is scored is not swallowed: the epoch's checkpoint is
    saved and Stopped raised, so that the scheduler's handler (requeue) runs."""
    import os
    import signal

    from hamr.checkpoint import Checkpointer, Stopped

    checkpointer = Checkpointer(tmp_path, tmp_path / "run", {"x": 1})

    def terminate_during_the_last(evaluation: int) -> None:
        if evaluation == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Stopped) as stop:
        run_fit(
            BaselineMethod(CrossEntropyLoss(), "ce", torch.device("cpu")),
            checkpointer=checkpointer,
            on_dev=terminate_during_the_last,
        )
    assert stop.value.signum == signal.SIGTERM and checkpointer.load()["epoch"] == 2
    assert signal.getsignal(signal.SIGTERM) is not checkpointer._handle  # the handlers are back
