"""Built-in toy datasets (generated, seeded, no download) and loaders for users' files.

Every generator returns float64 arrays in the column convention: ``X`` is ``(n_x, m)``; ``Y`` is
``(1, m)`` with 0/1 labels for binary problems, ``(K, m)`` one-hot for multi-class ones when
``one_hot=True`` (else ``(1, m)`` integer class ids stored as float64). The same seed gives the same
data; ``seed=None`` draws fresh data.
"""
from __future__ import annotations

import csv
import math
from typing import Optional

import numpy as np

from . import _validation as V
from .data import one_hot as _one_hot

__all__ = ["circles", "moons", "spirals", "blobs", "football", "load_csv", "load_npz"]


def _shuffle(gen, X, Y):
    p = gen.permutation(X.shape[1])
    return np.ascontiguousarray(X[:, p]), np.ascontiguousarray(Y[:, p])


def _labels_out(labels: np.ndarray, n_classes: int, one_hot: bool) -> np.ndarray:
    if one_hot:
        return _one_hot(labels, n_classes)
    return labels.astype(np.float64).reshape(1, -1)


def circles(m: int = 300, noise: float = 0.05, factor: float = 0.5, seed=None) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric circles (like sklearn's ``make_circles``), the seeds' initialization data.

    ``m // 2`` points on the outer unit circle (label 0) and the rest on a circle of radius ``factor``
    (label 1), plus Gaussian noise of std ``noise``; shuffled. Returns X (2, m), Y (1, m).
    """
    m = V.check_positive_int(m, "m", 2)
    noise = V.check_real(noise, "noise", 0.0)
    factor = V.check_real(factor, "factor", 0.0, 1.0, lo_open=True, hi_open=True)
    gen = V.as_generator(seed, "seed")
    m_out = m // 2
    m_in = m - m_out
    t_out = np.linspace(0, 2 * np.pi, m_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, m_in, endpoint=False)
    X = np.vstack([np.concatenate([np.cos(t_out), factor * np.cos(t_in)]),
                   np.concatenate([np.sin(t_out), factor * np.sin(t_in)])])
    Y = np.concatenate([np.zeros(m_out), np.ones(m_in)]).reshape(1, -1)
    if noise > 0:
        X = X + gen.normal(0.0, noise, size=X.shape)
    return _shuffle(gen, X, Y)


def moons(m: int = 300, noise: float = 0.2, seed=None) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (like sklearn's ``make_moons``). Returns X (2, m), Y (1, m)."""
    m = V.check_positive_int(m, "m", 2)
    noise = V.check_real(noise, "noise", 0.0)
    gen = V.as_generator(seed, "seed")
    m_out = m // 2
    m_in = m - m_out
    t_out = np.linspace(0, np.pi, m_out)
    t_in = np.linspace(0, np.pi, m_in)
    X = np.vstack([np.concatenate([np.cos(t_out), 1 - np.cos(t_in)]),
                   np.concatenate([np.sin(t_out), 1 - np.sin(t_in) - 0.5])])
    Y = np.concatenate([np.zeros(m_out), np.ones(m_in)]).reshape(1, -1)
    if noise > 0:
        X = X + gen.normal(0.0, noise, size=X.shape)
    return _shuffle(gen, X, Y)


def spirals(m: int = 300, n_classes: int = 3, noise: float = 0.2, seed=None, one_hot: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms, one per class (the classic planar multi-class toy set).

    Class k gets about m / n_classes points at radius r in [0, 1] and angle
    ``t = 4k + 4r + noise * N(0, 1)`` (radians); X = (r sin t, r cos t). Returns X (2, m) and Y
    (n_classes, m) one-hot, or (1, m) class ids with ``one_hot=False``.
    """
    m = V.check_positive_int(m, "m", 1)
    n_classes = V.check_positive_int(n_classes, "n_classes", 2)
    if m < n_classes:
        raise ValueError(f"m={m} is smaller than n_classes={n_classes}")
    noise = V.check_real(noise, "noise", 0.0)
    one_hot = V.check_bool(one_hot, "one_hot")
    gen = V.as_generator(seed, "seed")
    sizes = [m // n_classes + (1 if k < m % n_classes else 0) for k in range(n_classes)]
    xs, labels = [], []
    for k, n in enumerate(sizes):
        r = np.linspace(0.0, 1.0, n)
        t = 4.0 * k + 4.0 * r + noise * gen.standard_normal(n)
        xs.append(np.vstack([r * np.sin(t), r * np.cos(t)]))
        labels.append(np.full(n, k))
    X = np.hstack(xs)
    Y = _labels_out(np.concatenate(labels), n_classes, one_hot)
    return _shuffle(gen, X, Y)


def blobs(m: int = 300, centers=3, n_features: int = 2, std: float = 1.0, seed=None, one_hot: bool = True
          ) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs (like sklearn's ``make_blobs``).

    ``centers``: an int K (centers drawn uniformly in [-10, 10]^n_features) or a (K, n_features) array.
    Points are shared out evenly between the K blobs; each has std ``std`` per coordinate. Returns
    X (n_features, m) and Y (K, m) one-hot, or (1, m) class ids with ``one_hot=False``.
    """
    m = V.check_positive_int(m, "m", 1)
    n_features = V.check_positive_int(n_features, "n_features", 1)
    std = V.check_real(std, "std", 0.0)
    one_hot = V.check_bool(one_hot, "one_hot")
    gen = V.as_generator(seed, "seed")
    if V._is_int(centers):
        k = V.check_positive_int(centers, "centers", 1)
        C = gen.uniform(-10.0, 10.0, size=(k, n_features))
    else:
        C = V.as_array(centers, "centers").astype(np.float64)
        if C.shape[1] != n_features:
            raise ValueError(f"centers has shape {C.shape}; expected (K, n_features={n_features})")
        k = C.shape[0]
    if m < k:
        raise ValueError(f"m={m} is smaller than the number of centers {k}")
    labels = np.repeat(np.arange(k), [m // k + (1 if i < m % k else 0) for i in range(k)])
    X = C[labels].T + gen.normal(0.0, std, size=(n_features, m))
    Y = _labels_out(labels, k, one_hot)
    return _shuffle(gen, X, Y)


def _football_boundary(x1: np.ndarray) -> np.ndarray:
    """x2 of the true (nonlinear) boundary between the two teams' zones."""
    return 0.25 * np.sin(3.5 * x1) - 0.15 * x1 + 0.05


def _football_set(gen, m: int, flip: float):
    X = gen.uniform(-0.75, 0.75, size=(2, m))
    b = _football_boundary(X[0])
    y = (X[1] > b).astype(np.float64)
    # label noise in small patches ("islands" of the other team's headers) near the boundary, plus a
    # few isolated flips: a big unregularized net carves the training set's islands into its decision
    # boundary, and the dev set's islands are elsewhere
    n_isl = max(1, int(round(flip * 100)))
    cx = gen.uniform(-0.7, 0.7, size=n_isl)
    cy = _football_boundary(cx) + gen.normal(0.0, 0.12, size=n_isl)
    r = gen.uniform(0.05, 0.09, size=n_isl)
    inside = np.any((X[0][:, None] - cx) ** 2 + (X[1][:, None] - cy) ** 2 < r ** 2, axis=1)
    flip_it = (inside & (gen.random(m) < 0.8)) | (gen.random(m) < flip / 3)
    y = np.where(flip_it, 1.0 - y, y)
    return X, y.reshape(1, -1)


def football(m=(211, 200), seed=None, label_noise: float = 0.06
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A noisy 2-D binary set like the course's regularization assignment (the French goalkeeper).

    Positions on the field in [-0.75, 0.75]^2 where the ball was hit; label 1 when a French player
    headed it, 0 for the other team. The zones are separated by a wavy nonlinear boundary
    ``x2 = 0.25 sin(3.5 x1) - 0.15 x1 + 0.05`` and labels are flipped at random, mostly close to the
    boundary (``label_noise`` sets the overall rate: about 2 x label_noise of the points are flipped with
    the default), so a big unregularized net fits the noise on train and loses on dev while L2 or
    dropout does not.

    ``m``: (m_train, m_dev), or one int used for both. Returns (X_train, Y_train, X_dev, Y_dev) with
    X (2, m) and Y (1, m); train and dev come from the same distribution (independent draws).
    """
    if V._is_int(m):
        m_tr = m_dev = V.check_positive_int(m, "m", 1)
    elif isinstance(m, (tuple, list)) and len(m) == 2:
        m_tr = V.check_positive_int(m[0], "m[0] (train size)", 1)
        m_dev = V.check_positive_int(m[1], "m[1] (dev size)", 1)
    else:
        raise TypeError(f"m must be an int or a (m_train, m_dev) pair, got {m!r}")
    label_noise = V.check_real(label_noise, "label_noise", 0.0, 0.5)
    gen = V.as_generator(seed, "seed")
    X_tr, Y_tr = _football_set(gen, m_tr, label_noise)
    X_dev, Y_dev = _football_set(gen, m_dev, label_noise)
    return X_tr, Y_tr, X_dev, Y_dev


# --------------------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------------------

def _to_float(cell: str) -> Optional[float]:
    try:
        v = float(cell)
    except ValueError:
        return None
    return v


def _finish_labels(labels: np.ndarray, one_hot: bool) -> np.ndarray:
    if not one_hot:
        return labels.reshape(1, -1)
    if not np.all(labels == np.round(labels)) or np.any(labels < 0):
        raise ValueError("one_hot=True needs non-negative integer labels in the label column")
    return _one_hot(labels.astype(np.int64))


def load_csv(path, label_column=-1, delimiter: str = ",", header="auto", one_hot: bool = False):
    """Load a CSV of numbers whose ROWS are examples; return (X, Y) with examples as columns.

    label_column : int (negative counts from the end), a column name (needs a header), or None for
        no labels (Y is then None).
    header : "auto" (the first row is a header when any of its cells is not a number), True or False.
    one_hot : turn integer labels 0..K-1 into a (K, m) one-hot Y; else Y is (1, m).

    Blank lines are skipped. Raises ValueError for an empty file, rows of different lengths, and
    non-numeric or NaN/Inf cells (with the line and column).
    """
    p = V.check_file_path(path)
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise TypeError(f"delimiter must be a one-character string, got {delimiter!r}")
    if header not in ("auto", True, False):
        raise ValueError(f"header must be 'auto', True or False, got {header!r}")
    one_hot = V.check_bool(one_hot, "one_hot")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = [(i + 1, [c.strip() for c in r]) for i, r in enumerate(csv.reader(fh, delimiter=delimiter))]
    except UnicodeDecodeError as e:
        raise ValueError(f"{p!r} is not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise ValueError(f"{p!r} is not a readable CSV file ({e})") from None
    rows = [(ln, r) for ln, r in rows if any(c for c in r)]
    if not rows:
        raise ValueError(f"{p!r} is empty")
    names = None
    first_ln, first = rows[0]
    is_header = header is True or (header == "auto" and any(_to_float(c) is None for c in first))
    if is_header:
        names = first
        rows = rows[1:]
        if not rows:
            raise ValueError(f"{p!r} has a header but no data rows")
    width = len(names) if names is not None else len(rows[0][1])
    data = np.empty((len(rows), width))
    for i, (ln, r) in enumerate(rows):
        if len(r) != width:
            raise ValueError(f"{p!r} line {ln}: {len(r)} cells, expected {width} (ragged rows)")
        for j, c in enumerate(r):
            v = _to_float(c)
            if v is None:
                raise ValueError(f"{p!r} line {ln}, column {j + 1}: non-numeric cell {c!r}")
            if not math.isfinite(v):
                raise ValueError(f"{p!r} line {ln}, column {j + 1}: NaN/Inf cell {c!r}")
            data[i, j] = v
    if label_column is None:
        return np.ascontiguousarray(data.T), None
    if isinstance(label_column, str):
        if names is None:
            raise ValueError(f"label_column={label_column!r} is a name but the file has no header")
        if label_column not in names:
            raise ValueError(f"no column named {label_column!r}; columns: {names}")
        col = names.index(label_column)
    elif V._is_int(label_column):
        if not -width <= label_column < width:
            raise ValueError(f"label_column={label_column} out of range for {width} columns")
        col = label_column % width
    else:
        raise TypeError(f"label_column must be an int, a column name or None, got {label_column!r}")
    if width < 2:
        raise ValueError("the file has a single column: nothing left for X after taking the labels")
    X = np.ascontiguousarray(np.delete(data, col, axis=1).T)
    return X, _finish_labels(data[:, col].copy(), one_hot)


def load_npz(path, x_key: str = "X", y_key: Optional[str] = "Y", examples_as: str = "columns"):
    """Load (X, Y) from a ``.npz`` file (opened with ``allow_pickle=False``: no code from the file runs).

    examples_as : "columns" (the dnnkit convention, stored as (n_x, m)) or "rows" (stored as (m, n_x),
        transposed here). A 1-D array is read as m examples of one feature/label: (1, m).
    y_key : None to load X only (Y is None). Returns float64 arrays, X (n_x, m), Y (n_y, m).
    """
    p = V.check_file_path(path)
    if examples_as not in ("columns", "rows"):
        raise ValueError(f"examples_as must be 'columns' or 'rows', got {examples_as!r}")
    if not isinstance(x_key, str) or (y_key is not None and not isinstance(y_key, str)):
        raise TypeError("x_key and y_key must be strings (y_key may be None)")
    try:
        npz = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"could not read {p!r} as .npz: {exc}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{p!r} is a .npy file, not a .npz archive")
    with npz:
        keys = list(npz.files)

        def get(key):
            if key not in keys:
                raise ValueError(f"{p!r} has no array {key!r}; arrays: {keys}")
            try:
                a = npz[key]
            except ValueError as exc:  # object arrays need pickle
                raise ValueError(f"array {key!r} in {p!r} cannot be loaded without pickle: {exc}") from None
            a = V.as_array(a, key, ndim=None)
            if a.ndim == 1:
                return a.astype(np.float64).reshape(1, -1)
            if a.ndim != 2:
                raise ValueError(f"array {key!r} must be 1-D or 2-D, got shape {a.shape}")
            a = a.T if examples_as == "rows" else a
            return np.ascontiguousarray(a, dtype=np.float64)

        X = get(x_key)
        Y = None if y_key is None else get(y_key)
    if Y is not None and Y.shape[1] != X.shape[1]:
        raise ValueError(f"X has {X.shape[1]} examples but Y has {Y.shape[1]} "
                         f"(examples_as={examples_as!r}; try the other orientation?)")
    return X, Y
