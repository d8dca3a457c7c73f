"""Split a point set into parts connected within a distance: DBSCAN(eps, min_samples=1), fast.

With min_samples=1 every point is a core point, so DBSCAN's clusters are exactly the connected
components of the graph linking points at distance <= eps, numbered in the order of their first
point. This computes the same labels without listing every neighbourhood (which is what makes
DBSCAN slow and memory-hungry for an eps far larger than the point spacing, like SOLE's 0.95 m on
2 cm voxels):

1. Grid cells of side just under eps/sqrt(3): any two points in one cell are within eps, so a cell
   is connected inside and the graph reduces to one between occupied cells.
2. Only cells within two steps per axis can hold points within eps of each other. For each such
   pair, cheap vectorised certificates decide most cases: the gap between the cells' bounding
   boxes of points (> eps: not linked), and one exact distance between the two points that lie
   farthest toward each other (<= eps: linked).
3. The few undecided pairs whose cells are not yet in one component get an exact nearest-point
   test with a k-d tree.

"Within eps" is evaluated as scikit-learn's k-d tree does: ((dx*dx + dy*dy) + dz*dz) <= eps*eps
in float64, so borderline pairs are decided the same way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

# Neighbouring cell offsets, one of each +/- pair (components in -2..2, not all zero).
_OFFSETS = np.array(
    [o for o in itertools.product(range(-2, 3), repeat=3) if o > (0, 0, 0)], dtype=np.int64
)
_DIRECTIONS = np.array(
    [o for o in itertools.product((-1, 0, 1), repeat=3) if any(o)], dtype=np.float64
)
_DIRECTION_INDEX = {tuple(int(v) for v in d): i for i, d in enumerate(_DIRECTIONS)}
_OFFSET_DIRECTION = np.array(
    [_DIRECTION_INDEX[tuple(int(v) for v in np.sign(o))] for o in _OFFSETS]
)
_SAFETY = 1e-6  # relative margin that keeps float rounding away from every certificate
_BRUTE_FORCE_PAIR = 4096  # cell pairs with at most this many point pairs are tested all at once
_BRUTE_FORCE_CHUNK = 2_000_000  # point pairs per vectorised batch (bounded memory)


def column_min(a: np.ndarray) -> np.ndarray:
    """a.min(axis=0) for a tall [M, 3] array; per column is ~20x faster than numpy's axis-0 reduce."""
    return np.array([a[:, i].min() for i in range(a.shape[1])])


def column_max(a: np.ndarray) -> np.ndarray:
    return np.array([a[:, i].max() for i in range(a.shape[1])])


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return (d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) + d[..., 2] * d[..., 2]


def _first_occurrence_labels(
    cell_component: np.ndarray, point_cell: np.ndarray, cell_first_point: np.ndarray
) -> np.ndarray:
    """Point labels numbered 0, 1, ... in the order of each component's first point (DBSCAN's)."""
    n_comp = int(cell_component.max()) + 1
    first = np.full(n_comp, np.iinfo(np.int64).max)
    np.minimum.at(first, cell_component, cell_first_point)
    rank = np.empty(n_comp, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(n_comp)
    return rank[cell_component][point_cell]


def _kdtree_parts(points: np.ndarray, eps: float) -> np.ndarray:
    """Fallback for extreme extents: every pair within eps, then components (exact, slower)."""
    pairs = cKDTree(points).query_pairs(eps * (1 + _SAFETY), output_type="ndarray")
    if len(pairs):
        pairs = pairs[_sq_dist(points[pairs[:, 0]], points[pairs[:, 1]]) <= eps * eps]
    n = points.shape[0]
    graph = (
        coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        if len(pairs)
        else coo_matrix((n, n))
    )
    return connected_components(graph, directed=False)[1]


class _UnionFind:
    def __init__(self, labels: np.ndarray):
        self.parent = list(labels)

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _cells_linked(a: np.ndarray, b: np.ndarray, eps: float) -> bool:
    """Exact: is some point of a within eps of some point of b?"""
    eps2 = eps * eps
    if a.shape[0] * b.shape[0] <= 4096:
        return bool((_sq_dist(a[:, None, :], b[None, :, :]) <= eps2).any())
    if a.shape[0] > b.shape[0]:
        a, b = b, a
    tree = cKDTree(b)
    dist, idx = tree.query(a, k=1, distance_upper_bound=eps * (1 + _SAFETY))
    near = np.isfinite(dist)
    if not near.any():
        return False
    if (_sq_dist(a[near], b[idx[near]]) <= eps2).any():
        return True
    # nearest points sit in the rounding band around eps: check every candidate exactly
    for i in np.flatnonzero(near):
        cand = tree.query_ball_point(a[i], eps * (1 + _SAFETY))
        if (_sq_dist(a[i][None], b[cand]) <= eps2).any():
            return True
    return False


def connected_parts(points: np.ndarray, eps: float, groups: np.ndarray | None = None) -> np.ndarray:
    """Labels 0..K-1 per point, identical to ``DBSCAN(eps=eps, min_samples=1).fit(points).labels_``.

    ``groups`` (one integer per point, each group's points contiguous) splits many point sets in
    one call, as if each were alone: points of different groups are never linked. Labels are then
    numbered over all points in order of first occurrence, so a group's own DBSCAN labels are its
    labels minus their minimum. One call for many small sets saves the per-call overhead that
    dominates when every query's mask is split on its own.
    """
    points, group, n_groups = _checked_input(points, eps, groups)
    m = points.shape[0]
    if m <= 1:
        return np.zeros(m, dtype=np.int64)
    side = eps / np.sqrt(3.0) * (1 - _SAFETY)
    lo = column_min(points)
    cell = np.floor((points - lo) / side).astype(np.int64)
    extent = column_max(cell) + 5  # room for offsets of -2..+2 without wrapping
    if float(np.prod(extent.astype(np.float64))) * n_groups > 2.0**62:
        if group is not None:  # key space too large for all groups at once: one at a time
            return _per_group(points, eps, group)
        component = _kdtree_parts(points, eps)
        return _first_occurrence_labels(component, np.arange(m), np.arange(m))
    keys = ((cell[:, 0] + 2) * extent[1] + (cell[:, 1] + 2)) * extent[2] + (cell[:, 2] + 2)
    if group is not None:
        # the group is the most significant digit of the key: neighbour offsets (-2..+2 per axis,
        # inside the padded extent) never reach another group's cells
        keys = keys + group * int(np.prod(extent))
    grid = _Grid.of(points, keys)
    if grid.n_cells == 1:
        return np.zeros(m, dtype=np.int64)
    pairs = _candidate_pairs(grid, extent, eps)
    if pairs is None:
        return _first_occurrence_labels(
            np.arange(grid.n_cells), grid.point_cell, grid.cell_first_point
        )
    pair_a, pair_b, pair_dir = pairs
    centre = (cell[grid.order[grid.starts]] + 0.5) * side + lo
    linked = _centre_links(grid, centre, pair_a, pair_b, eps)
    cell_component = _components(grid.n_cells, pair_a[linked], pair_b[linked])
    pending = np.flatnonzero(cell_component[pair_a] != cell_component[pair_b])
    if pending.shape[0]:
        linked[
            pending[
                _extreme_point_links(grid, pair_a[pending], pair_b[pending], pair_dir[pending], eps)
            ]
        ] = True
        cell_component = _components(grid.n_cells, pair_a[linked], pair_b[linked])
    cell_component = _exact_links(grid, pair_a, pair_b, linked, cell_component, eps)
    return _first_occurrence_labels(cell_component, grid.point_cell, grid.cell_first_point)


def _checked_input(points, eps: float, groups) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Points as (M,3) float64, each point's group numbered 0.. (None without groups), group count."""
    points = np.ascontiguousarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (M, 3), got {points.shape}")
    if not eps > 0:
        raise ValueError("eps must be positive")
    m = points.shape[0]
    if groups is None:
        return points, None, 1
    groups = np.asarray(groups).reshape(-1)
    if groups.shape[0] != m:
        raise ValueError(f"{groups.shape[0]} group ids for {m} points")
    ids, group = np.unique(groups, return_inverse=True)
    group = group.reshape(-1).astype(np.int64)
    if m and (np.diff(group) != 0).sum() != ids.shape[0] - 1:
        raise ValueError("each group's points must be contiguous")
    return points, group, ids.shape[0]


@dataclass
class _Grid:
    """The occupied grid cells: points sorted by cell key, each cell a contiguous run of them."""

    order: np.ndarray  # input index of each sorted point
    sorted_points: np.ndarray  # points[order]
    starts: np.ndarray  # first sorted point of each cell
    sizes: np.ndarray  # points per cell
    cell_keys: np.ndarray  # key of each cell, increasing
    cell_sorted: np.ndarray  # cell of each sorted point
    point_cell: np.ndarray  # cell of each input point
    cell_first_point: np.ndarray  # lowest input index in each cell

    @property
    def n_cells(self) -> int:
        return int(self.starts.shape[0])

    @property
    def bounds(self) -> np.ndarray:
        return np.r_[self.starts, self.sorted_points.shape[0]]

    @classmethod
    def of(cls, points: np.ndarray, keys: np.ndarray) -> "_Grid":
        m = points.shape[0]
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        n_cells = starts.shape[0]
        sizes = np.diff(np.r_[starts, m])
        cell_sorted = np.repeat(np.arange(n_cells), sizes)
        point_cell = np.empty(m, dtype=np.int64)
        point_cell[order] = cell_sorted
        # the stable sort keeps input order inside a cell: its first sorted point is its lowest index
        return cls(
            order,
            points[order],
            starts,
            sizes,
            sorted_keys[starts],
            cell_sorted,
            point_cell,
            order[starts],
        )


def _candidate_pairs(grid: _Grid, extent: np.ndarray, eps: float):
    """Pairs of occupied cells (A, B = A + offset) whose boxes of points come within eps, with the
    direction index of each offset; None when no two occupied cells are neighbours."""
    n_cells = grid.n_cells
    strides = np.array([extent[1] * extent[2], extent[2], 1], dtype=np.int64)
    target = grid.cell_keys[:, None] + (_OFFSETS @ strides)[None, :]  # [cells, 62]
    pos = np.minimum(np.searchsorted(grid.cell_keys, target), n_cells - 1)
    pair_a, which = np.nonzero(grid.cell_keys[pos] == target)
    if pair_a.shape[0] == 0:
        return None
    pair_b = pos[pair_a, which]
    pair_dir = _OFFSET_DIRECTION[which]
    box_lo = np.minimum.reduceat(grid.sorted_points, grid.starts, axis=0)
    box_hi = np.maximum.reduceat(grid.sorted_points, grid.starts, axis=0)
    gap = np.maximum(
        0.0, np.maximum(box_lo[pair_b] - box_hi[pair_a], box_lo[pair_a] - box_hi[pair_b])
    )
    keep = (gap * gap).sum(axis=1) <= eps * eps * (1 + _SAFETY)
    return pair_a[keep], pair_b[keep], pair_dir[keep]


def _centre_links(
    grid: _Grid, centre: np.ndarray, pair_a: np.ndarray, pair_b: np.ndarray, eps: float
) -> np.ndarray:
    """Certificate 1 (cheap, decides dense clouds): the points nearest the cell centres are within
    eps. Centres of cells touching by a face, edge or corner are <= eps apart, and links between
    farther cells are usually implied through the cells in between. Per pair: linked."""
    sorted_points, starts, cell_sorted = grid.sorted_points, grid.starts, grid.cell_sorted
    d2 = _sq_dist(sorted_points, centre[cell_sorted])
    nearest = np.flatnonzero(d2 == np.minimum.reduceat(d2, starts)[cell_sorted])
    nearest = nearest[np.r_[True, cell_sorted[nearest[1:]] != cell_sorted[nearest[:-1]]]]
    rep = sorted_points[nearest]
    return _sq_dist(rep[pair_a], rep[pair_b]) <= eps * eps


def _extreme_point_links(
    grid: _Grid, pair_a: np.ndarray, pair_b: np.ndarray, pair_dir: np.ndarray, eps: float
) -> np.ndarray:
    """Certificate 2: the points of two cells lying farthest toward each other are within eps,
    for the given (still undecided) pairs only. Per pair: linked."""
    sorted_points, starts, sizes = grid.sorted_points, grid.starts, grid.sizes
    cells = np.unique(np.r_[pair_a, pair_b])
    rows = np.concatenate([np.arange(starts[c], starts[c] + sizes[c]) for c in cells])
    sub_starts = np.r_[0, np.cumsum(sizes[cells])[:-1]]
    local = np.full(grid.n_cells, -1)
    local[cells] = np.arange(cells.shape[0])
    proj = sorted_points[rows] @ _DIRECTIONS.T  # [rows, 26]
    best = np.maximum.reduceat(proj, sub_starts, axis=0)
    sub_cell = np.repeat(np.arange(cells.shape[0]), sizes[cells])
    hit_row, hit_dir = np.nonzero(proj == best[sub_cell])
    extreme = np.empty((cells.shape[0], _DIRECTIONS.shape[0]), dtype=np.int64)
    extreme[sub_cell[hit_row[::-1]], hit_dir[::-1]] = rows[hit_row[::-1]]  # first hit wins
    opposite = _DIRECTIONS.shape[0] - 1 - pair_dir  # the list is symmetric: -d mirrored
    a_pt = sorted_points[extreme[local[pair_a], pair_dir]]
    b_pt = sorted_points[extreme[local[pair_b], opposite]]
    return _sq_dist(a_pt, b_pt) <= eps * eps


def _exact_links(
    grid: _Grid,
    pair_a: np.ndarray,
    pair_b: np.ndarray,
    linked: np.ndarray,
    cell_component: np.ndarray,
    eps: float,
) -> np.ndarray:
    """The exact test for pairs no certificate linked whose cells are still apart: small cell pairs
    every point pair at once (vectorised), large ones by k-d tree. The cells' components after it."""
    sorted_points, sizes, bounds = grid.sorted_points, grid.sizes, grid.bounds
    undecided = np.flatnonzero(~linked)
    undecided = undecided[cell_component[pair_a[undecided]] != cell_component[pair_b[undecided]]]
    if undecided.shape[0] == 0:
        return cell_component
    cost = sizes[pair_a[undecided]] * sizes[pair_b[undecided]]
    small = undecided[cost <= _BRUTE_FORCE_PAIR]
    if small.shape[0]:
        hit = _brute_force_links(sorted_points, bounds, pair_a[small], pair_b[small], eps)
        extra_a = np.r_[pair_a[linked], pair_a[small[hit]]]
        extra_b = np.r_[pair_b[linked], pair_b[small[hit]]]
        cell_component = _components(grid.n_cells, extra_a, extra_b)
    large = undecided[cost > _BRUTE_FORCE_PAIR]
    large = large[cell_component[pair_a[large]] != cell_component[pair_b[large]]]
    if large.shape[0]:
        forest = _UnionFind(np.arange(cell_component.max() + 1))
        for i in large:
            a, b = int(pair_a[i]), int(pair_b[i])
            ca, cb = forest.find(int(cell_component[a])), forest.find(int(cell_component[b]))
            if ca != cb and _cells_linked(
                sorted_points[bounds[a] : bounds[a + 1]],
                sorted_points[bounds[b] : bounds[b + 1]],
                eps,
            ):
                forest.union(ca, cb)
        roots = np.array([forest.find(c) for c in range(cell_component.max() + 1)])
        cell_component = roots[cell_component]
    return cell_component


def _per_group(points: np.ndarray, eps: float, group: np.ndarray) -> np.ndarray:
    """connected_parts with groups, one group at a time (labels numbered over all points)."""
    labels = np.empty(points.shape[0], dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    bounds = np.r_[starts, points.shape[0]]
    offset = 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = connected_parts(points[a:b], eps)
        labels[a:b] = part + offset
        offset += int(part.max()) + 1
    return labels


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(a.shape[0]), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _brute_force_links(
    points: np.ndarray, bounds: np.ndarray, a: np.ndarray, b: np.ndarray, eps: float
) -> np.ndarray:
    """For each cell pair (a[i], b[i]): is any point pair within eps? All pairs, in chunks."""
    out = np.zeros(a.shape[0], dtype=bool)
    na, nb = np.diff(bounds)[a], np.diff(bounds)[b]
    cost = na * nb
    ends = np.cumsum(cost)
    chunk_start = 0
    while chunk_start < a.shape[0]:
        base = ends[chunk_start - 1] if chunk_start else 0
        chunk_end = int(np.searchsorted(ends, base + _BRUTE_FORCE_CHUNK, side="right"))
        chunk_end = max(chunk_end, chunk_start + 1)
        sel = slice(chunk_start, chunk_end)
        counts = cost[sel]
        pair = np.repeat(np.arange(chunk_end - chunk_start), counts)
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        ia = bounds[a[sel]][pair] + local // nb[sel][pair]
        ib = bounds[b[sel]][pair] + local % nb[sel][pair]
        close = _sq_dist(points[ia], points[ib]) <= eps * eps
        out[chunk_start:chunk_end] = np.bincount(pair[close], minlength=chunk_end - chunk_start) > 0
        chunk_start = chunk_end
    return out
