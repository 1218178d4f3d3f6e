"""k-NN graph benchmark: build once, refresh by gather (hamr.algorithm.neighbors) at N = 1e4..1e6.

    python scripts/bench_knn.py                                  # N = 1e4, 1e5, 1e6 (minutes on 2 cores)
    python scripts/bench_knn.py --sizes 2000 --out /tmp/knn      # seconds, for tests

Data: synthetic 384-d unit vectors drawn around 1,000 random centres (within-centre cosine about
0.8), standing in for sentence embeddings, which are clustered; on structureless uniform vectors
every approximate index loses recall (``--spread`` sets the noise). For each N it measures the
graph build (`knn_graph`: exact IndexFlatIP up to ``--exact-max``, HNSW above, as ``hamr.knn_index=auto``
chooses), the refresh (top 10% by hardness -> neighbourhood scores b, a gather over graph rows),
the authors' refresh (a new index search for every hard example; extrapolated from a sample of
queries where a full search would take too long), and recall@k of the graph against exact search
for a sample of examples. Writes ``<out>/knn.json`` and ``knn.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

TARGETS = {"refresh_seconds_at_1e6": 1.0, "build_seconds_at_1e6": 600.0, "recall_at_1e6": 0.9}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--hard-ratio", type=float, default=0.1)
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.5, help="noise scale around a centre")
    parser.add_argument("--exact-max", type=int, default=200_000, help="as hamr.knn_exact_max")
    parser.add_argument("--recall-sample", type=int, default=1000)
    parser.add_argument("--authors-sample", type=int, default=2000, help="queries timed for the authors' refresh")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    return parser.parse_args(argv)


def synthetic_embeddings(n: int, dim: int, centres: int, spread: float, seed: int = 0) -> np.ndarray:
    """(n, dim) float32 unit vectors around ``centres`` random directions."""
    rng = np.random.default_rng(seed)
    centre_vectors = rng.standard_normal((centres, dim), dtype=np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in chunks: bounded temporary memory
        stop = min(n, start + 100_000)
        x[start:stop] = centre_vectors[rng.integers(0, centres, stop - start)]
        x[start:stop] += spread * rng.standard_normal((stop - start, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def bench_size(args: argparse.Namespace, n: int) -> dict:
    import faiss

    from hamr.algorithm.neighbors import hard_examples, knn_graph, neighbourhood_scores

    x = synthetic_embeddings(n, args.dim, args.centres, args.spread)
    kind = "flat" if n <= args.exact_max else "hnsw"
    start = time.perf_counter()
    graph = knn_graph(x, args.k, "auto", args.exact_max)
    build = time.perf_counter() - start

    rng = np.random.default_rng(1)
    h = rng.random(n)
    refresh_times = []
    for _ in range(5):
        start = time.perf_counter()
        b = neighbourhood_scores(graph, hard_examples(h, args.hard_ratio))
        refresh_times.append(time.perf_counter() - start)
        h = rng.random(n)
    assert 0 < b.max() <= 1

    exact_index = faiss.IndexFlatIP(args.dim)
    exact_index.add(x)
    sample = rng.choice(n, min(args.recall_sample, n), replace=False)
    _, exact = exact_index.search(x[sample], args.k)
    recall = float(np.mean([len(set(graph[i]) & set(e)) / args.k for i, e in zip(sample, exact)]))

    n_hard = max(1, int(np.ceil(args.hard_ratio * n)))
    queries = x[hard_examples(h, args.hard_ratio)[: args.authors_sample]]
    start = time.perf_counter()
    exact_index.search(queries, args.k)
    authors = (time.perf_counter() - start) * n_hard / len(queries)
    row = {
        "n": n,
        "index": kind,
        "build_seconds": build,
        "refresh_seconds_median": float(np.median(refresh_times)),
        "authors_refresh_seconds": authors,
        "authors_refresh_extrapolated": len(queries) < n_hard,
        "recall_at_k": recall,
        "recall_sample": len(sample),
        "hard_examples": n_hard,
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def markdown(results: dict) -> str:
    lines = [
        "# k-NN graph benchmark",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}; machine: {results['machine']}; faiss {results['faiss']}; "
        f"{results['dim']}-d unit vectors around {results['centres']} centres (spread {results['spread']}), "
        f"k = {results['k']}, hard ratio {results['hard_ratio']}.",
        "",
        "| N | index | graph build (s) | refresh (s) | authors' refresh (s) | recall@k |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["sizes"]:
        authors = f"{row['authors_refresh_seconds']:.2f}" + (
            " (extrapolated)" if row["authors_refresh_extrapolated"] else ""
        )
        lines.append(
            f"| {row['n']:,} | {row['index']} | {row['build_seconds']:.1f} | {row['refresh_seconds_median']:.4f} "
            f"| {authors} | {row['recall_at_k']:.3f} |"
        )
    lines += [
        "",
        "Refresh: top hard examples by h and a gather over their graph rows (this project, every "
        "refresh). Authors' refresh: an exact search for every hard example (their code, every refresh). "
        f"Recall@k: the graph's neighbours vs exact search, on {results['sizes'][0]['recall_sample']:,} "
        "sampled examples.",
        "",
    ]
    largest = max(results["sizes"], key=lambda r: r["n"])
    if largest["n"] >= 1_000_000:
        checks = [
            ("refresh at N = 1e6", "< 1 s", largest["refresh_seconds_median"], largest["refresh_seconds_median"] < 1),
            ("graph build at N = 1e6", "< 600 s", largest["build_seconds"], largest["build_seconds"] < 600),
            ("recall@10 at N = 1e6", ">= 0.9", largest["recall_at_k"], largest["recall_at_k"] >= 0.9),
        ]
        lines += ["## Targets", "", "| quantity | target | measured | |", "|---|---|---|---|"]
        lines += [
            f"| {name} | {target} | {value:.3g} | {'met' if ok else 'not met'} |" for name, target, value, ok in checks
        ]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    import faiss

    from hamr.results import atomic_write_bytes

    started = time.time()
    results = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{platform.machine()} CPU, {faiss.omp_get_max_threads()} FAISS threads",
        "faiss": faiss.__version__,
        "dim": args.dim,
        "k": args.k,
        "hard_ratio": args.hard_ratio,
        "centres": args.centres,
        "spread": args.spread,
        "exact_max": args.exact_max,
        "sizes": [bench_size(args, n) for n in args.sizes],
    }
    results["seconds"] = time.time() - started
    atomic_write_bytes(args.out / "knn.json", json.dumps(results, indent=2).encode())
    text = markdown(results)
    atomic_write_bytes(args.out / "knn.md", text.encode())
    print(text)
