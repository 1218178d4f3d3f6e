"""Speed benchmarks (``make bench``): the training step of CE, HAMR and its cheaper modes on the same
batches, the k-NN graph, and the accuracy of the cheaper meta modes. ``scripts/bench_*.py`` are
their command lines."""
