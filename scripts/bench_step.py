"""Training-step benchmark: CE vs HAMR (exact, cheaper modes, the authors' step) on the same batches.

    python scripts/bench_step.py                       # MiniLM, SST-5 + MIT-Restaurant, CPU or GPU
    python scripts/bench_step.py --model tiny_random --reps 2 --out /tmp/bench   # seconds, for tests

For each dataset, fixed real training batches (and meta batches from the balanced meta set's
source, dev) are run through every variant's *training step* (the loop's `train_step`: the
method's loss, backward, clipping, optimiser step). Variants are interleaved, their order rotated
every repetition, so that drifts in the machine's speed hit them alike; each repetition yields a
ratio to CE measured seconds apart, and the median ratio over repetitions is reported. Peak memory
is measured per variant in a fresh subprocess on CPU (max RSS), or with
`torch.cuda.max_memory_allocated` on GPU. Writes `<out>/step_<device>.json` and `.md`.
"""

from hamr.benchmark.step import main

if __name__ == "__main__":
    raise SystemExit(main())
