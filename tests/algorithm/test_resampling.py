"""Hardness EMA, the kNN neighbourhood boost and the sampler against explicit references."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from hamr.algorithm.hardness import (
    decay_for_half_life,
    initial_hardness,
    relative_loss,
    update_global_decay,
    update_per_example,
)
from hamr.algorithm.neighbors import hard_examples, knn_graph, neighbourhood_scores
from hamr.algorithm.sampling import draw, sampling_probabilities


def test_per_example_ema_updates_only_the_batch_in_order():
    h = initial_hardness(4, "per_example")
    assert h.tolist() == [1.0] * 4
    new = update_per_example(h, np.array([2, 0, 2]), np.array([3.0, 0.5, 5.0]), gamma=0.9)
    first = 0.9 * 1.0 + 0.1 * 3.0
    assert new.tolist() == pytest.approx([0.9 + 0.05, 1.0, 0.9 * first + 0.1 * 5.0, 1.0])
    assert h.tolist() == [1.0] * 4  # pure: the input is untouched


def test_global_decay_rule_decays_everyone_and_stays_a_distribution():
    h = initial_hardness(4, "global_decay")
    assert h.tolist() == [0.25] * 4
    new = update_global_decay(h, np.array([1]), np.array([2.0]), gamma=0.9, floor=1e-4)
    raw = np.array([0.225, 0.225 + 0.2, 0.225, 0.225]) + 1e-4
    assert new.tolist() == pytest.approx((raw / raw.sum()).tolist(), rel=1e-12)
    assert new.sum() == pytest.approx(1.0)


def test_global_decay_adds_an_example_drawn_twice_in_a_batch_twice():
    """Sampling draws with replacement; the authors' code (``meta_probs.index_add_``) adds each
    occurrence, so the reference is their four tensor operations."""
    h = np.array([0.1, 0.2, 0.3, 0.4])
    index, values = np.array([2, 0, 2]), np.array([3.0, 0.5, 5.0])
    reference = torch.tensor(h).mul_(0.9).index_add_(0, torch.tensor(index), 0.1 * torch.tensor(values)).add_(1e-6)
    reference.div_(reference.sum())
    new = update_global_decay(h, index, values, gamma=0.9, floor=1e-6)
    assert new.tolist() == pytest.approx(reference.tolist(), rel=1e-12)


def test_the_authors_floor_pulls_a_large_pool_back_to_uniform():
    """N·floor of uniform mass enters a distribution of mass 1 at every step: with the authors' NER
    floor (1e-4) and N = 16,619 (BioNLP) one step takes a point mass most of the way to uniform."""
    n = 16_619
    h = np.zeros(n)
    h[0] = 1.0
    new = update_global_decay(h, np.array([], dtype=np.int64), np.array([]), gamma=0.99, floor=1e-4)
    assert new[0] == pytest.approx((0.99 + 1e-4) / (0.99 + n * 1e-4))  # 0.37: from 1 to 0.37 in one step
    assert new[1] == pytest.approx(1e-4 / (0.99 + n * 1e-4))


@pytest.mark.parametrize("half_life", [1, 3, 250])
def test_a_half_life_halves_an_old_value_after_that_many_applications(half_life):
    gamma = decay_for_half_life(half_life)
    h = np.array([1.0])  # an old value of 1, then visits that bring 0
    for _ in range(half_life):
        h = update_per_example(h, np.array([0]), np.array([0.0]), gamma)
    assert h[0] == pytest.approx(0.5)
    assert decay_for_half_life(0.5) == pytest.approx(0.25)  # half a visit: a quarter is kept per visit


def test_relative_loss_is_the_loss_over_its_batch_mean():
    assert relative_loss(torch.tensor([1.0, 3.0])).tolist() == [0.5, 1.5]
    assert relative_loss(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]  # a batch with no loss: no preference


def test_knn_graph_on_hand_built_2d_points():
    points = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99], [-1, 0]], dtype=np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    graph = knn_graph(points, k=2)
    assert graph[:, 0].tolist() == [0, 1, 2, 3, 4]  # each point is its own nearest neighbour
    assert graph[:, 1].tolist()[:4] == [1, 0, 3, 2]


def test_knn_graph_equals_brute_force_topk():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    expected = torch.topk(torch.from_numpy(x @ x.T), k=7, dim=1).indices.numpy()
    np.testing.assert_array_equal(np.sort(knn_graph(x, 7), axis=1), np.sort(expected, axis=1))


def test_hnsw_graph_recalls_the_exact_graph_and_auto_switches_on_size(caplog):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    x = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact = knn_graph(x, 10, "flat")
    approximate = knn_graph(x, 10, "hnsw")
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approximate, exact)])
    assert recall >= 0.9
    np.testing.assert_array_equal(knn_graph(x, 10, "auto", exact_max=3000), exact)
    with caplog.at_level(logging.INFO, logger="hamr.algorithm.neighbors"):
        knn_graph(x[:500], 10, "auto", exact_max=100)
        knn_graph(x[:500], 10, "auto", exact_max=500)
    assert [r.getMessage().split(", ")[-1] for r in caplog.records] == ["hnsw index", "flat index"]
    with pytest.raises(ValueError, match="index='ivf'"):
        knn_graph(x, 10, "ivf")


def test_neighbourhood_scores_ignore_missing_neighbours():
    neighbours = np.array([[0, 1], [1, -1], [2, -1]])
    np.testing.assert_array_equal(neighbourhood_scores(neighbours, np.array([1, 2])), [0.0, 1.0, 1.0])


def test_neighbourhood_scores_count_votes_of_hard_examples():
    neighbours = np.array([[0, 1], [1, 0], [2, 3], [3, 2], [4, 1]])
    h = np.array([5.0, 0.1, 0.2, 0.3, 4.0])
    hard = hard_examples(h, hard_ratio=0.4)  # ceil(0.4 * 5) = 2 -> examples 0 and 4
    assert sorted(hard.tolist()) == [0, 4]
    assert hard_examples(h, hard_ratio=0.3).tolist() == [0, 4]  # ceil(1.5) = 2: a partial example counts
    assert hard_examples(h, hard_ratio=0.01).tolist() == [0]  # never none
    b = neighbourhood_scores(neighbours, hard)
    # votes: 0 <- {0}, 1 <- {0, 4}, 4 <- {4}: counts [1, 2, 0, 0, 1] / 2
    assert b.tolist() == [0.5, 1.0, 0.0, 0.0, 0.5]


def test_sampling_probabilities_formula_and_monotonicity():
    h, b = np.array([1.0, 2.0, 4.0]), np.array([0.0, 1.0, 0.5])
    expected = np.array([(1 + 1e-6) ** 0.7, (2 + 1e-6) ** 0.7 * 1.7, (4 + 1e-6) ** 0.7 * 1.35])
    p = sampling_probabilities(h, b, tau=0.7, lambda_=0.7, epsilon=1e-6)
    assert p.tolist() == pytest.approx((expected / expected.sum()).tolist())
    flatter = sampling_probabilities(h, np.zeros(3), tau=0.3, lambda_=0.0, epsilon=1e-6)
    sharper = sampling_probabilities(h, np.zeros(3), tau=1.0, lambda_=0.0, epsilon=1e-6)
    assert flatter[2] / flatter[0] < sharper[2] / sharper[0]  # smaller tau flattens
    boosted = sampling_probabilities(h, b, tau=0.7, lambda_=2.0, epsilon=1e-6)
    assert boosted[1] > p[1]  # larger lambda moves mass to neighbours of hard examples
    # epsilon keeps an example of hardness 0 drawable: (0 + 0.5) : (1 + 0.5)
    assert sampling_probabilities(
        np.array([0.0, 1.0]), np.zeros(2), tau=1.0, lambda_=0.0, epsilon=0.5
    ).tolist() == pytest.approx([0.25, 0.75])


def test_draws_follow_the_probabilities():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    indices = draw(p, oversample=2500.0, generator=torch.Generator().manual_seed(0))
    assert len(indices) == 10_000
    frequencies = np.bincount(indices.numpy(), minlength=4) / len(indices)
    assert frequencies == pytest.approx(p, abs=0.015)
    again = draw(p, oversample=2500.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(indices, again)


class FakeGpuFaiss:
    """A stand-in for faiss-gpu: real FAISS CPU indices, a GPU count, and a record of which index was
    moved to the GPUs (index_cpu_to_all_gpus returns the CPU index itself, so the search is real)."""

    def __init__(self, gpus: int):
        import faiss

        self._faiss, self.gpus, self.moved = faiss, gpus, []
        self.IndexFlatIP, self.IndexHNSWFlat, self.METRIC_INNER_PRODUCT = (
            faiss.IndexFlatIP,
            faiss.IndexHNSWFlat,
            faiss.METRIC_INNER_PRODUCT,
        )
        self.StandardGpuResources = object

    def get_num_gpus(self) -> int:
        return self.gpus

    def index_cpu_to_all_gpus(self, index):
        self.moved.append(type(index).__name__)
        return index


@pytest.mark.parametrize("gpus", [0, 1])
def test_the_exact_graph_is_built_on_the_gpu_when_faiss_sees_one(monkeypatch, gpus):
    import sys

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    fake = FakeGpuFaiss(gpus)
    monkeypatch.setitem(sys.modules, "faiss", fake)
    graph = knn_graph(x, 5, "auto", exact_max=100)  # above exact_max: HNSW on a CPU, exact on a GPU
    assert fake.moved == (["IndexFlatIP"] if gpus else [])
    if gpus:
        expected = torch.topk(torch.from_numpy(x @ x.T), k=5, dim=1).indices.numpy()
        np.testing.assert_array_equal(np.sort(graph, axis=1), np.sort(expected, axis=1))
