"""One graphed-bench configuration in its own process: prints OK or the error, never raises.

    python scripts/gpu_diag.py <name> <bench_step.py arguments>   (scripts/gpu_diag.sh runs the set of 2026-11-28)

A name containing ``mask4d`` feeds the encoder a 4D boolean attention mask instead of the 2D one.
"""

from __future__ import annotations

import sys
import time
import traceback

import torch


def main() -> None:
    import hamr.benchmark.step as bench
    import hamr.steps

    name, argv = sys.argv[1], sys.argv[2:]
    if "mask4d" in name:

        def four_d_inputs(batch, device=None):
            inputs = {k: v for k, v in batch.items() if k not in ("labels", "index")}
            inputs["attention_mask"] = inputs["attention_mask"][:, None, None, :].bool()
            return inputs

        hamr.steps.model_inputs = four_d_inputs
    args = bench.parse_args(argv)
    started = time.time()
    try:
        result = bench.bench_dataset(args, args.datasets[0], torch.device("cuda"))
        torch.cuda.synchronize()
        medians = {v: round(x["seconds_per_step_median"], 4) for v, x in result["variants"].items()}
        print(f"DIAG {name}: OK", medians, f"{time.time() - started:.0f}s")
    except Exception as err:  # noqa: BLE001 - a diagnostic reports every failure and goes on
        print(f"DIAG {name}: FAILED {type(err).__name__}: {str(err).splitlines()[0]}", f"{time.time() - started:.0f}s")
        traceback.print_exc(limit=4)


if __name__ == "__main__":
    main()
