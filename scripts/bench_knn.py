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

from hamr.benchmark.knn import main

if __name__ == "__main__":
    raise SystemExit(main())
