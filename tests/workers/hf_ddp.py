"""One process of the 2-process DDP test (tests/test_hf.py): ``torchrun --nproc_per_node 2 -m
tests.workers.hf_ddp OUT [bare]`` trains the equivalence test's HamrTrainer on the CPU (gloo) and
saves what each rank ends with to OUT/rank<r>.pt. ``bare``: the training forward deliberately runs
through the bare module (the regression the test must catch: DDP then never synchronises)."""

from __future__ import annotations

import sys

import torch

from hamr import hf
from tests.test_hf import Recorder, hamr_values, make_trainer


def main(out: str, bare: bool) -> None:
    trainer = make_trainer("cls", hamr_values(), out, ddp_backend="gloo")
    original, recorders = trainer.get_train_dataloader, []

    def get_train_dataloader():
        loader = original()
        if not recorders:
            recorders.append(Recorder(trainer.hamr_method))
        return loader

    trainer.get_train_dataloader = get_train_dataloader
    if bare:
        loss_function = trainer._loss_function
        trainer._loss_function = lambda model: loss_function(trainer.accelerator.unwrap_model(model))
    trainer.train()
    method = trainer.hamr_method
    torch.save(
        {
            "world_size": trainer.args.world_size,
            "model": {
                k: v.detach().clone() for k, v in trainer.accelerator.unwrap_model(trainer.model).state_dict().items()
            },
            "theta": [p.detach().clone() for p in method.weight_net.parameters()],
            "h": torch.from_numpy(method.h.copy()),
            "b": torch.from_numpy(method.b.copy()),
            "orders": recorders[0].orders,
            "steps": method.steps,
        },
        f"{out}/rank{trainer.args.process_index}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1], bare=len(sys.argv) > 2 and sys.argv[2] == "bare")
    hf.dist.destroy_process_group() if hf.dist.is_initialized() else None
