"""Sentence embeddings, the k-NN graph of the training set, and neighbourhood scores b
(docs/method.md section 2)."""

from __future__ import annotations

import hashlib
import io
import logging
import math
from pathlib import Path

import numpy as np

from hamr.results import atomic_write_bytes

log = logging.getLogger(__name__)


def embed_texts(
    texts: list[str],
    encoder: str,
    batch_size: int,
    max_length: int,
    device: str,
    cache_dir: Path | None = None,
    name: str = "texts",
) -> np.ndarray:
    """L2-normalised sentence embeddings (N, D) float32 with sentence-transformers, cached on disk
    as ``<cache_dir>/embeddings/<name>-<encoder>-<hash of encoder, max_length and texts>.npy``."""
    key = hashlib.sha1("\n".join([encoder, str(max_length), *texts]).encode()).hexdigest()[:16]
    slug = encoder.split(":")[-1].replace("/", "_")
    path = cache_dir / "embeddings" / f"{name}-{slug}-{key}.npy" if cache_dir else None
    if path is not None and path.is_file():
        log.info("sentence embeddings from cache %s", path)
        return np.load(path)
    from sentence_transformers import SentenceTransformer

    from hamr.models import resolve_model_path

    model = SentenceTransformer(resolve_model_path(encoder), device=device)
    model.max_seq_length = max_length
    embeddings = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    ).astype(np.float32)
    if path is not None:
        buffer = io.BytesIO()
        np.save(buffer, embeddings)
        atomic_write_bytes(path, buffer.getvalue())
    return embeddings


def _gpu_available(faiss) -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0  # faiss-gpu installed


def knn_graph(
    embeddings: np.ndarray,
    k: int,
    index: str = "flat",
    exact_max: int = 200_000,
    hnsw_m: int = 32,
    ef_construction: int = 64,
    ef_search: int = 64,
    search_batch: int = 65_536,
) -> np.ndarray:
    """Indices (N, k) of each example's k nearest neighbours by inner product; an example is
    usually its own first neighbour. The embeddings never change, so the graph is built once and
    a refresh is a gather over its rows (:func:`neighbourhood_scores`).

    ``index``: ``flat`` exact search (FAISS IndexFlatIP, on the GPU when faiss-gpu sees one);
    ``hnsw`` an approximate HNSW graph (M = ``hnsw_m``), for training sets too large for exact
    all-pairs search on a CPU; ``auto`` flat on a GPU or up to ``exact_max`` examples, else hnsw.
    """
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "HAMR's k-NN graph needs FAISS. Fix: pip install faiss-cpu (make install does), or on a GPU "
            "machine conda install -c conda-forge faiss-gpu (environment.yml does)"
        ) from None

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = x.shape
    k = min(k, n)
    gpu = _gpu_available(faiss)
    kind = index if index != "auto" else ("flat" if gpu or n <= exact_max else "hnsw")
    if kind == "flat":
        search_index = faiss.IndexFlatIP(dim)
        if gpu:
            search_index = faiss.index_cpu_to_all_gpus(search_index)
    elif kind == "hnsw":
        search_index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        search_index.hnsw.efConstruction = ef_construction
        search_index.hnsw.efSearch = max(ef_search, k)
    else:
        raise ValueError(f"knn_graph: index={index!r}; allowed: auto | flat | hnsw")
    log.info("k-NN graph: %d examples, k=%d, %s index%s", n, k, kind, " on GPU" if gpu and kind == "flat" else "")
    search_index.add(x)
    neighbours = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, search_batch):  # bounded memory for the (batch, k) results
        _, neighbours[start : start + search_batch] = search_index.search(x[start : start + search_batch], k)
    return neighbours


def hard_examples(h: np.ndarray, hard_ratio: float) -> np.ndarray:
    """Indices of the top ceil(hard_ratio * N) examples by hardness (ties: lower index first)."""
    count = max(1, math.ceil(hard_ratio * len(h)))
    return np.argsort(-h, kind="stable")[:count]


def neighbourhood_scores(neighbours: np.ndarray, hard: np.ndarray) -> np.ndarray:
    """b_i = (how many hard examples list i among their neighbours) / (the largest such count),
    so b ∈ [0, 1]; (N,) float64. Entries -1 (an approximate index found fewer than k) are ignored."""
    votes = neighbours[hard].ravel()
    counts = np.bincount(votes[votes >= 0], minlength=len(neighbours)).astype(np.float64)
    return counts / counts.max() if counts.max() > 0 else counts
