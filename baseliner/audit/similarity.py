"""Similarity of package sets and clusters of near-duplicate environments.

Each environment is a set of `source:name==version` tokens. Jaccard similarity of every pair comes
from one matrix product: with X the environments x tokens 0/1 matrix, X·Xᵀ holds every pair's
intersection (BLAS, in row blocks to bound memory) — no Python loop over pairs. Pairs at or above
the threshold (default 0.9) are edges; clusters are the connected components of that graph.

Build-string, channel and pip-vs-conda differences are reported separately (findings), not mixed
into the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

BLOCK = 2048


@dataclass(frozen=True)
class Clusters:
    labels: np.ndarray  # cluster id per environment
    pairs: np.ndarray  # (k, 2) index pairs with similarity >= threshold
    scores: np.ndarray  # (k,) their Jaccard similarity

    def members(self) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for index, label in enumerate(self.labels.tolist()):
            groups.setdefault(label, []).append(index)
        return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


def token_matrix(token_sets: Sequence[Sequence[str]]) -> csr_matrix:
    """A sparse 0/1 matrix: one row per token set, one column per distinct token."""
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for row, tokens in enumerate(token_sets):
        for token in set(tokens):
            rows.append(row)
            cols.append(vocabulary.setdefault(token, len(vocabulary)))
    data = np.ones(len(rows), dtype=np.float32)
    return coo_matrix((data, (rows, cols)), shape=(len(token_sets), max(len(vocabulary), 1))).tocsr()


def jaccard_pairs(matrix: csr_matrix, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) with Jaccard >= threshold, and their scores.

    J(a, b) >= t  <=>  |a & b| * (1 + t) >= t * (|a| + |b|), so no division over the whole block.
    Tokens held by a single environment add nothing to any intersection: their columns are dropped
    before the product (the set sizes keep them)."""
    sizes = np.asarray(matrix.sum(axis=1)).ravel().astype(np.float32)
    shared_cols = np.flatnonzero(np.asarray(matrix.sum(axis=0)).ravel() > 1)
    dense = matrix[:, shared_cols].toarray()
    n = dense.shape[0]
    found_pairs, found_scores = [], []
    for start in range(0, n, BLOCK):
        # This block against itself and every later row: the upper triangle, half the work.
        inter = dense[start : start + BLOCK] @ dense[start:].T
        bound = threshold * (sizes[start : start + BLOCK, None] + sizes[None, start:])
        i, j = np.nonzero(inter * (1 + threshold) >= bound - 1e-4)
        keep = i < j
        i, j = i[keep], j[keep]
        common = inter[i, j]
        found_pairs.append(np.stack([i + start, j + start], axis=1))
        found_scores.append(common / (sizes[i + start] + sizes[j + start] - common))
    if not found_pairs:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    return np.concatenate(found_pairs), np.concatenate(found_scores)


def cluster(token_sets: Sequence[Sequence[str]], threshold: float = 0.9) -> Clusters:
    """Group token sets whose Jaccard similarity is at least `threshold` (connected components)."""
    n = len(token_sets)
    if n == 0:
        return Clusters(np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64), np.zeros(0))
    pairs, scores = jaccard_pairs(token_matrix(token_sets), threshold)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return Clusters(labels, pairs, scores)


def similarity_matrix(token_sets: Sequence[Sequence[str]]) -> np.ndarray:
    """The full Jaccard matrix (for reports of a few hundred environments)."""
    dense = token_matrix(token_sets).toarray()
    sizes = dense.sum(axis=1)
    inter = dense @ dense.T
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)
