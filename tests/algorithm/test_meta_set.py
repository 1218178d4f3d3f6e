"""The balanced meta-validation set."""

from collections import Counter

import numpy as np

from hamr.algorithm.meta_set import balanced_meta_indices


def test_cls_meta_set_reaches_the_median_and_leaves_train():
    dev = ["a"] * 10 + ["b"] * 6 + ["c"] * 1 + ["d"] * 2  # median of (10, 6, 1, 2) = 4
    train = ["a"] * 50 + ["b"] * 30 + ["c"] * 20 + ["d"] * 3
    moved, dev_counts, after = balanced_meta_indices(train, dev, "cls", seed=0, max_share=0.5)
    assert dev_counts == {"a": 10, "b": 6, "c": 1, "d": 2}
    assert after["c"] == 4 and after["a"] == 10 and after["b"] == 6
    assert after["d"] == 3  # only int(0.5 * 3) = 1 of d's 3 training examples may move
    moved_classes = Counter(train[i] for i in moved)
    assert moved_classes == Counter({"c": 3, "d": 1})
    assert moved == balanced_meta_indices(train, dev, "cls", seed=0, max_share=0.5)[0]


def test_ner_meta_set_counts_entity_spans():
    dev = [["B-X", "O"], ["B-X", "B-X"], ["B-Y", "O"], ["B-Z", "I-Z"]]  # X: 3, Y: 1, Z: 1 -> median 1
    dev = dev + [["B-Y"]] * 2  # X 3, Y 3, Z 1 -> median 3
    train = [["B-Z", "O", "B-Z"]] * 4 + [["B-X"]] * 10 + [["O"]] * 5
    moved, _, after = balanced_meta_indices(train, dev, "ner", seed=1, max_share=0.5)
    assert after["Z"] >= 3 and all(train[i][0] == "B-Z" for i in moved)
    assert len(moved) == 1  # one sentence carries two Z spans: 1 + 2 = 3
    assert np.setdiff1d(np.arange(len(train)), moved).size == len(train) - 1


def test_a_class_below_the_minimum_count_keeps_all_its_training_examples():
    dev = ["a"] * 10 + ["b"] * 6 + ["c"] * 1 + ["d"] * 2  # median 4
    train = ["a"] * 50 + ["b"] * 30 + ["c"] * 20 + ["d"] * 3
    moved, _, after = balanced_meta_indices(train, dev, "cls", seed=0, max_share=0.5, min_train_count=5)
    assert Counter(train[i] for i in moved) == Counter({"c": 3})  # d has 3 < 5 training examples: none move
    assert after["d"] == 2
