"""Similarity of package sets and clusters of near-duplicate environments.

Each environment is a set of `source:name==version` tokens. Two environments are linked when their
Jaccard similarity is at or above the threshold (default 0.9); clusters are the connected components
of that graph. Two methods give the same components:

* **exact** (up to `EXACT_LIMIT` environments): with X the environments x tokens 0/1 matrix, X·Xᵀ
  holds every pair's intersection (BLAS, in row blocks to bound memory), no Python loop over pairs.
  Its cost grows with n², so it stops being usable in the tens of thousands.
* **MinHash-LSH** (beyond it): datasketch's MinHash hash family gives each environment a signature;
  environments whose signatures agree on a whole band share a bucket and are candidates. Inside a
  bucket every pair that would join two components is checked with the exact Jaccard, so no
  unverified edge is ever used; the banding is chosen so that an edge at the threshold is missed with
  probability below `MISS_PROBABILITY`. Pairs inside one component are never compared, which is
  what keeps a fleet of 100,000 near-identical environments cheap.

Build-string, channel and pip-vs-conda differences are reported separately (findings), not mixed
into the score.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from itertools import chain

import numpy as np
from datasketch import MinHash
from datasketch.hashfunc import sha1_hash32
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

BLOCK = 2048
EXACT_LIMIT = 5_000
NUM_PERM = 128
MISS_PROBABILITY = 1e-6
SEED = 1
# datasketch's MinHash permutes a 32-bit hash h as ((a*h + b) mod p) & MAX_HASH, in uint64
# arithmetic; the signatures below apply the same map to the whole vocabulary at once
# (tests/unit/test_audit.py compares them with MinHash.update_batch).
MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)
SMALL_BUCKET = 16  # buckets up to this size check all their pairs in one vectorised step
DENSE_LIMIT = 32_000_000  # a bucket's rows x columns above which its check stays sparse


@dataclass(frozen=True)
class Clusters:
    labels: np.ndarray  # cluster id per environment
    method: str  # "exact" or "minhash-lsh"

    def members(self) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for index, label in enumerate(self.labels.tolist()):
            groups.setdefault(label, []).append(index)
        return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


@dataclass(frozen=True)
class Tokens:
    """Token sets as a sparse 0/1 matrix (one row per set) and the token of every column."""

    matrix: csr_matrix
    vocabulary: list[str]

    @cached_property
    def sizes(self) -> np.ndarray:
        """Each set's size (read in every bucket check: computed once)."""
        return np.diff(self.matrix.indptr).astype(np.float32)


def token_matrix(token_sets: Sequence[Sequence[str]]) -> Tokens:
    """A sparse 0/1 matrix: one row per token set, one column per distinct token (in first-seen order)."""
    vocabulary = {token: i for i, token in enumerate(dict.fromkeys(chain.from_iterable(token_sets)))}
    cols = np.fromiter(map(vocabulary.__getitem__, chain.from_iterable(token_sets)), dtype=np.int32)
    rows = np.repeat(np.arange(len(token_sets), dtype=np.int32), [len(t) for t in token_sets])
    shape = (len(token_sets), max(len(vocabulary), 1))
    matrix = coo_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=shape).tocsr()
    matrix.sum_duplicates()
    matrix.data[:] = 1  # a token listed twice is still one member of the set
    return Tokens(matrix, list(vocabulary))


def linked(inter: np.ndarray, size_a: np.ndarray, size_b: np.ndarray, threshold: float) -> np.ndarray:
    """J(a, b) >= t  <=>  |a & b| * (1 + t) >= t * (|a| + |b|): no division, same answer everywhere."""
    return np.asarray(inter * (1 + threshold) >= threshold * (size_a + size_b) - 1e-4)


def jaccard_pairs(tokens: Tokens, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) with Jaccard >= threshold, and their scores (the exact method).

    Tokens held by a single environment add nothing to any intersection: their columns are dropped
    before the product (the set sizes keep them)."""
    matrix, sizes = tokens.matrix, tokens.sizes
    shared_cols = np.flatnonzero(np.asarray(matrix.sum(axis=0)).ravel() > 1)
    dense = matrix[:, shared_cols].toarray()
    n = dense.shape[0]
    found_pairs, found_scores = [], []
    for start in range(0, n, BLOCK):
        # This block against itself and every later row: the upper triangle, half the work.
        inter = dense[start : start + BLOCK] @ dense[start:].T
        i, j = np.nonzero(linked(inter, sizes[start : start + BLOCK, None], sizes[None, start:], threshold))
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
    if len(token_sets) <= EXACT_LIMIT:
        return cluster_exact(token_sets, threshold)
    return cluster_lsh(token_sets, threshold)


def cluster_exact(token_sets: Sequence[Sequence[str]], threshold: float = 0.9) -> Clusters:
    """Connected components of the graph of every pair at or above the threshold."""
    n = len(token_sets)
    if n == 0:
        return Clusters(np.zeros(0, dtype=np.int64), "exact")
    pairs, _ = jaccard_pairs(token_matrix(token_sets), threshold)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return Clusters(labels, "exact")


def signatures(tokens: Tokens, num_perm: int = NUM_PERM, seed: int = SEED) -> np.ndarray:
    """Every row's MinHash signature (num_perm x n, uint32), as datasketch's MinHash computes it.

    The vocabulary is hashed and permuted once; a row's value under one permutation is the minimum
    over its tokens, taken for all rows by one `minimum.reduceat` over the CSR column indices."""
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    hashed = np.array([sha1_hash32(t.encode()) for t in tokens.vocabulary], dtype=np.uint64)[:, None]
    permuted = np.bitwise_and((hashed * a + b) % MERSENNE_PRIME, MAX_HASH).astype(np.uint32).T.copy()
    indptr, indices = tokens.matrix.indptr, tokens.matrix.indices
    n = tokens.matrix.shape[0]
    out = np.full((num_perm, n), np.uint32(MAX_HASH), dtype=np.uint32)  # an empty set's signature
    filled = np.flatnonzero(np.diff(indptr))

    def one(perm: int) -> None:
        out[perm, filled] = np.minimum.reduceat(permuted[perm][indices], indptr[filled])

    if len(filled):
        # numpy releases the GIL inside gather and reduceat: one thread per core.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(one, range(num_perm)))
    return out


def banding(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """(bands, rows per band): the widest band whose miss chance at the threshold stays small.

    A pair at similarity t shares no bucket with probability (1 - t**r)**b; wider bands (larger r)
    mean fewer chance candidates, so take the largest r that keeps that below MISS_PROBABILITY."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if (1 - threshold**rows) ** bands <= MISS_PROBABILITY:
            return bands, rows
    return num_perm, 1


class _Forest:
    """Union-find over environment indices, kept in numpy so a whole bucket resolves at once."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def roots(self, index: np.ndarray) -> np.ndarray:
        found = self.parent[index]
        while True:
            up = self.parent[found]
            if np.array_equal(up, found):
                return found
            found = up

    def compress(self) -> None:
        while True:
            up = self.parent[self.parent]
            if np.array_equal(up, self.parent):
                return
            self.parent = up

    def join(self, a: np.ndarray, b: np.ndarray) -> None:
        """Merge the components of every pair (a[k], b[k])."""
        ra, rb = self.roots(a), self.roots(b)
        keep = ra != rb
        if not keep.any():
            return
        nodes, pairs = np.unique(np.concatenate([ra[keep], rb[keep]]), return_inverse=True)
        half = len(pairs) // 2
        graph = coo_matrix((np.ones(half), (pairs[:half], pairs[half:])), shape=(len(nodes), len(nodes)))
        _, group = connected_components(graph, directed=False)
        # Every group's smallest root becomes the root of the others.
        first = np.full(group.max() + 1, len(self.parent))
        np.minimum.at(first, group, nodes)
        self.parent[nodes] = first[group]


def _intersections(matrix: csr_matrix, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|set a[k] & set b[k]| for every k, row by row."""
    return np.asarray(matrix[a].multiply(matrix[b]).sum(axis=1)).ravel()


def _check_bucket(tokens: Tokens, rows: np.ndarray, forest: _Forest, threshold: float) -> None:
    """Check every pair of the bucket that would join two components; merge the linked ones.

    A member outside the bucket's largest component is compared with the whole bucket once. When
    no such member is left unchecked, every pair across two components has been checked."""
    sub: csr_matrix | None = None
    dense: np.ndarray | None = None  # made when a block is large enough for BLAS to pay
    sizes = tokens.sizes[rows]
    checked = np.zeros(len(rows), dtype=bool)
    while True:
        roots = forest.roots(rows)
        values, counts = np.unique(roots, return_counts=True)
        if len(values) == 1:
            return
        todo = np.flatnonzero((roots != values[np.argmax(counts)]) & ~checked)[:512]
        if not len(todo):
            return
        checked[todo] = True
        if sub is None:
            sub = tokens.matrix[rows]
        if dense is None and len(todo) > 32:
            cols = np.flatnonzero(np.bincount(sub.indices, minlength=sub.shape[1]))
            if len(rows) * len(cols) <= DENSE_LIMIT:
                dense = sub[:, cols].toarray()
        inter = dense[todo] @ dense.T if dense is not None else (sub[todo] @ sub.T).toarray()
        hit = linked(inter, sizes[todo, None], sizes[None, :], threshold)
        i, j = np.nonzero(hit & (roots[todo, None] != roots[None, :]))
        forest.join(rows[todo[i]], rows[j])


def cluster_lsh(token_sets: Sequence[Sequence[str]], threshold: float = 0.9) -> Clusters:
    """The same components as `cluster_exact`, from MinHash-LSH candidates checked exactly.

    Environments that share a bucket in any band form candidate groups (components of the
    unverified bucket graph). An edge of the similarity graph lies inside one group unless LSH
    missed it in every band, so each group is clustered on its own: exactly (`jaccard_pairs`) when
    it is small enough, else bucket by bucket (`_verify_buckets`)."""
    n = len(token_sets)
    tokens = token_matrix(token_sets)
    buckets = _buckets(signatures(tokens), *banding(threshold))
    edges_a, edges_b = [], []
    for bucket in buckets:  # every member to its bucket's first member, in each band
        order, starts, counts = _runs(bucket)
        edges_a.append(np.repeat(order[starts], counts))
        edges_b.append(order)
    a, b = np.concatenate(edges_a), np.concatenate(edges_b)
    _, group = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    forest = _Forest(n)
    order, starts, _ = _runs(group)
    for rows in np.split(order, starts[1:]):
        if len(rows) < 2:
            continue
        if len(rows) <= EXACT_LIMIT:
            pairs, _ = jaccard_pairs(Tokens(tokens.matrix[rows], tokens.vocabulary), threshold)
            forest.join(rows[pairs[:, 0]], rows[pairs[:, 1]])
        else:
            _verify_buckets(tokens, rows, [bucket[rows] for bucket in buckets], forest, threshold)
    forest.compress()
    _, labels = np.unique(forest.parent, return_inverse=True)
    return Clusters(labels, "minhash-lsh")


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices sorted by key (stable), where each run of equal keys starts in that order, and its length."""
    order = np.argsort(keys, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(keys[order]) != 0])
    return order, starts, np.diff(np.r_[starts, len(keys)])


def _buckets(sig: np.ndarray, bands: int, width: int) -> list[np.ndarray]:
    """Per band, every environment's bucket: the id of its signature's slice for that band."""
    out = []
    for band in range(bands):
        keys = np.ascontiguousarray(sig[band * width : (band + 1) * width].T)
        out.append(np.unique(keys.view(np.dtype((np.void, 4 * width))).ravel(), return_inverse=True)[1])
    return out


def _verify_buckets(
    tokens: Tokens, rows: np.ndarray, buckets: list[np.ndarray], forest: _Forest, threshold: float
) -> None:
    """Link a large candidate group through its buckets, checking every pair that would join two
    components: first each member against its bucket's first member (all buckets at once), then the
    buckets still mixed, all their pairs at once when small, else with `_check_bucket`."""
    sizes = tokens.sizes
    for bucket in buckets:
        local, starts, counts = _runs(bucket)
        order = rows[local]
        first = np.repeat(order[starts], counts)  # each member's first member
        for attempt in ("star", "pairs"):
            forest.compress()
            roots = forest.parent[order]
            mixed = np.minimum.reduceat(roots, starts) != np.maximum.reduceat(roots, starts)
            if not mixed.any():
                break
            if attempt == "star":
                pick = (roots != forest.parent[first]) & np.repeat(mixed, counts)
                a, b = first[pick], order[pick]
                ok = linked(_intersections(tokens.matrix, a, b), sizes[a], sizes[b], threshold)
                forest.join(a[ok], b[ok])
                continue
            # The star checked every pair of a two-member bucket.
            for size in np.unique(counts[mixed & (counts > 2) & (counts <= SMALL_BUCKET)]).tolist():
                at = starts[mixed & (counts == size)][:, None]
                i, j = np.triu_indices(size, 1)
                a, b = order[at + i].ravel(), order[at + j].ravel()
                ok = linked(_intersections(tokens.matrix, a, b), sizes[a], sizes[b], threshold)
                forest.join(a[ok], b[ok])
            large = mixed & (counts > SMALL_BUCKET)
            for start, size in zip(starts[large].tolist(), counts[large].tolist(), strict=True):
                _check_bucket(tokens, order[start : start + size], forest, threshold)


def similarity_matrix(token_sets: Sequence[Sequence[str]]) -> np.ndarray:
    """The full Jaccard matrix (for reports of a few hundred environments)."""
    dense = token_matrix(token_sets).matrix.toarray()
    sizes = dense.sum(axis=1)
    inter = dense @ dense.T
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)
