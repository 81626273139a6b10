"""Data handling the seeds' way: train/dev/test splits, input normalization, shift checks, augmentation.

Conventions: ``X`` is ``(n_x, m)`` and ``Y`` is ``(n_y, m)``, examples are COLUMNS. No function here
modifies the arrays it is given; every result is a new array.

- ``split``: train/dev/test, with explicit fractions or the seeds' ``"auto"`` rule, seeded, stratified
  for class labels.
- ``Standardizer``: ``x_norm = (x - mu) / sigma`` with mu and sigma computed on the TRAINING set only
  (the seeds: "use the same mu and sigma to normalize the test set").
- ``check_shift``: per-feature statistics comparing two splits (the seeds' "mismatched train/test
  distribution"), with a ``DistributionShiftWarning``.
- ``augment_images`` / ``augment_noise``: seeded data augmentation (flips, shifts, noise).
- ``one_hot`` / ``from_one_hot``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from . import _validation as V

__all__ = [
    "Split",
    "split",
    "auto_fractions",
    "Standardizer",
    "DistributionShiftWarning",
    "ShiftReport",
    "check_shift",
    "flip_images",
    "shift_images",
    "augment_images",
    "augment_noise",
    "one_hot",
    "from_one_hot",
]


# --------------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------------

_ONE_HOT_MAX = 2**31  # entries (16 GiB of float64): beyond that the labels are not class ids


def one_hot(labels, n_classes: Optional[int] = None) -> np.ndarray:
    """Integer class labels (shape (m,) or (1, m)) -> one-hot float64 matrix of shape (n_classes, m).

    ``n_classes`` defaults to ``max(label) + 1``. Labels must be integer-valued and in [0, n_classes).
    """
    arr = V.as_array(labels, "labels", ndim=None)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise ValueError(f"labels must have shape (m,) or (1, m), got {arr.shape}")
    if not np.all(arr == np.round(arr)):
        raise ValueError("labels must be integer-valued")
    if np.any(arr < 0):
        raise ValueError(f"labels must be >= 0, got min {arr.min()}")
    lab = arr.astype(np.int64)
    k = int(lab.max()) + 1
    if n_classes is None:
        n_classes = k
    n_classes = V.check_positive_int(n_classes, "n_classes", 1)
    if k > n_classes:
        raise ValueError(f"label {k - 1} out of range for n_classes={n_classes}")
    if n_classes * lab.size > _ONE_HOT_MAX:
        raise ValueError(f"a one-hot matrix of {n_classes} classes x {lab.size} examples is too large "
                         f"(more than {_ONE_HOT_MAX:,} entries); labels must be class ids 0..K-1")
    out = np.zeros((n_classes, lab.size), dtype=np.float64)
    out[lab, np.arange(lab.size)] = 1.0
    return out


def from_one_hot(Y) -> np.ndarray:
    """(K, m) one-hot (or class scores/probabilities) -> int64 labels of shape (m,), the argmax per column.

    A single row (1, m) is read as binary 0/1 labels (or probabilities, thresholded at 0.5).
    """
    Y = V.as_array(Y, "Y")
    if Y.shape[0] == 1:
        return (Y[0] >= 0.5).astype(np.int64)
    return np.argmax(Y, axis=0).astype(np.int64)


def _class_labels(Y: np.ndarray) -> Optional[np.ndarray]:
    """Class id per example if Y looks like class labels (a 0/1 row or one-hot columns), else None."""
    if Y.shape[0] == 1:
        row = Y[0]
        if np.all((row == 0) | (row == 1)):
            return row.astype(np.int64)
        return None
    if np.all((Y == 0) | (Y == 1)) and np.all(Y.sum(axis=0) == 1):
        return np.argmax(Y, axis=0).astype(np.int64)
    return None


# --------------------------------------------------------------------------------------------------
# split
# --------------------------------------------------------------------------------------------------

class Split(NamedTuple):
    """The six arrays of a split; unpack as ``X_train, Y_train, X_dev, Y_dev, X_test, Y_test``.

    ``Y_*`` are None when no ``Y`` was given; ``X_test``/``Y_test`` are None when there is no test set.
    ``indices`` (attribute, not a field) holds the column indices (train, dev, test) into the input.
    """

    X_train: np.ndarray
    Y_train: Optional[np.ndarray]
    X_dev: np.ndarray
    Y_dev: Optional[np.ndarray]
    X_test: Optional[np.ndarray]
    Y_test: Optional[np.ndarray]


class _SplitWithIndices(Split):
    # a NamedTuple subclass without __slots__ has a __dict__, so it can carry ``indices``
    indices: tuple

    def __repr__(self) -> str:
        def shape(a):
            return None if a is None else a.shape

        return "Split(" + ", ".join(f"{k}: {shape(v)}" for k, v in zip(self._fields, self)) + ")"


_SMALL_M = 10_000          # up to here: 60/20/20
_EVAL_CAP = 10_000         # dev and test each hold about this many examples in between
_BIG_M = 1_000_000         # from here on: 98/1/1


def auto_fractions(m: int) -> tuple[float, float, float]:
    """The seeds' rule for (train, dev, test) fractions given m examples.

    - small data, ``m <= 10,000``: 60/20/20;
    - big data, ``m >= 1,000,000``: 98/1/1;
    - in between: dev and test each keep about 10,000 examples (enough to compare models and to
      estimate the error), the rest trains.

    Exactly: ``n_dev = n_test = min(0.2*m, max(10_000, 0.01*m))``. It is continuous: 20% each up to
    m = 50,000 (so also for every m <= 10,000), then 10,000 each, reaching 1% each at 1,000,000.
    """
    m = V.check_positive_int(m, "m", 1)
    n_eval = min(0.2 * m, max(float(_EVAL_CAP), 0.01 * m))
    f = n_eval / m
    return (1.0 - 2.0 * f, f, f)


def _parse_fractions(fractions, m: int) -> tuple[float, float, float]:
    if isinstance(fractions, str):
        if fractions != "auto":
            raise ValueError(f"fractions must be 'auto' or a (train, dev[, test]) tuple, got {fractions!r}")
        return auto_fractions(m)
    if not isinstance(fractions, (tuple, list, np.ndarray)):
        raise TypeError(f"fractions must be 'auto' or a (train, dev[, test]) tuple, got {type(fractions).__name__}")
    fr = list(fractions)
    if len(fr) not in (2, 3):
        raise ValueError(f"fractions must have 2 (train, dev) or 3 (train, dev, test) entries, got {len(fr)}")
    vals = [V.check_real(f, "each fraction", 0.0, 1.0) for f in fr]
    if vals[0] <= 0:
        raise ValueError(f"the train fraction must be > 0, got {vals[0]}")
    if abs(sum(vals) - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1 (within 1e-9), got {fr} summing to {sum(vals)!r}")
    if len(vals) == 2:
        vals.append(0.0)
    return tuple(vals)  # type: ignore[return-value]


def _counts(fracs, m: int) -> list[int]:
    """Sizes (train, dev, test): every split with a positive fraction gets at least 1 example."""
    need = sum(1 for f in fracs if f > 0)
    if m < need:
        raise ValueError(f"m={m} examples cannot fill {need} non-empty splits (fractions {fracs})")
    n_dev = int(round(fracs[1] * m))
    n_test = int(round(fracs[2] * m))
    if fracs[1] > 0:
        n_dev = max(n_dev, 1)
    if fracs[2] > 0:
        n_test = max(n_test, 1)
    n_train = m - n_dev - n_test
    if n_train < 1:
        raise ValueError(f"m={m} examples are too few for fractions {fracs}: no example left to train on")
    return [n_train, n_dev, n_test]


def _stratified_order(classes: np.ndarray, gen: Optional[np.random.Generator]) -> np.ndarray:
    """An order of the m indices such that every prefix holds each class in proportion (within 1).

    Inside class c (m_c examples, shuffled when ``gen`` is given) the k-th example gets the position
    u = (k + 0.5) / m_c in [0, 1]; sorting all examples by u spreads each class evenly along the order,
    so cutting the order into train | dev | test preserves the class proportions.
    """
    m = classes.size
    u = np.empty(m)
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        if gen is not None:
            idx = gen.permutation(idx)
        u[idx] = (np.arange(idx.size) + 0.5) / idx.size
    tiebreak = gen.random(m) if gen is not None else np.arange(m)
    return np.lexsort((tiebreak, u))


def split(X, Y=None, fractions="auto", stratify=None, seed=None, shuffle: bool = True) -> Split:
    """Split columns of X (and Y) into train, dev and test sets.

    Parameters
    ----------
    X : (n_x, m) array.  Y : (n_y, m) array or None.
    fractions : ``"auto"`` (see ``auto_fractions``: 60/20/20 for m <= 10,000; dev and test about
        10,000 examples each in between; 98/1/1 from 1,000,000), or ``(train, dev, test)`` summing to 1
        (within 1e-9), or ``(train, dev)`` meaning no test set (the seeds: "it is OK to have only a
        dev set"). Every split with a positive fraction gets at least one example; a ValueError says
        when m is too small.
    stratify : None (auto), True, False, or a length-m array of class labels. Auto stratifies when
        ``shuffle`` is True and Y looks like class labels (a 0/1 row or one-hot columns). Stratified
        splits keep each class's proportion in every split (within one example per class).
    seed : int, np.random.Generator or None; the same seed gives the same split.
    shuffle : False keeps the original order: train is the first columns, then dev, then test
        (with stratification, the first examples of each class go to train).

    Returns a ``Split`` (named tuple ``X_train, Y_train, X_dev, Y_dev, X_test, Y_test``; Y parts None
    without Y, test parts None without a test fraction) with ``.indices`` = (train, dev, test) column
    indices. The arrays are copies; the inputs are not modified.
    """
    X = V.as_array(X, "X")
    m = X.shape[1]
    if Y is not None:
        Y = V.as_array(Y, "Y", cols=m)
    V.check_bool(shuffle, "shuffle")
    fracs = _parse_fractions(fractions, m)
    counts = _counts(fracs, m)
    gen = V.as_generator(seed, "seed") if shuffle else None
    if seed is not None and not shuffle:
        V.as_generator(seed, "seed")  # still validated

    classes = None
    if stratify is None:
        if shuffle and Y is not None:
            classes = _class_labels(Y)
    elif isinstance(stratify, (bool, np.bool_)):
        if stratify:
            if Y is None:
                raise ValueError("stratify=True needs Y (or pass the labels: stratify=labels)")
            classes = _class_labels(Y)
            if classes is None:
                if Y.shape[0] == 1 and np.all(Y == np.round(Y)):
                    classes = Y[0].astype(np.int64)  # integer class ids in one row
                else:
                    raise ValueError("stratify=True but Y does not look like class labels "
                                     "(a 0/1 or integer row, or one-hot columns)")
    else:
        lab = V.as_array(stratify, "stratify", ndim=None)
        if lab.ndim == 2 and lab.shape[0] == 1:
            lab = lab[0]
        if lab.ndim != 1 or lab.size != m:
            raise ValueError(f"stratify labels must have shape (m,) = ({m},), got {lab.shape}")
        classes = lab

    if classes is not None:
        order = _stratified_order(np.asarray(classes), gen)
    elif gen is not None:
        order = gen.permutation(m)
    else:
        order = np.arange(m)

    n_train, n_dev, n_test = counts
    idx_train = order[:n_train]
    idx_dev = order[n_train:n_train + n_dev]
    idx_test = order[n_train + n_dev:]
    if gen is not None and classes is not None:
        # the stratified order interleaves classes regularly; shuffle inside each split
        idx_train, idx_dev, idx_test = (gen.permutation(i) for i in (idx_train, idx_dev, idx_test))
    elif gen is None:
        idx_train, idx_dev, idx_test = (np.sort(i) for i in (idx_train, idx_dev, idx_test))

    def take(A, idx):
        return None if A is None else A[:, idx]  # fancy indexing: always a copy

    has_test = fracs[2] > 0
    out = _SplitWithIndices(
        take(X, idx_train), take(Y, idx_train),
        take(X, idx_dev), take(Y, idx_dev),
        take(X, idx_test) if has_test else None, take(Y, idx_test) if has_test else None,
    )
    out.indices = (idx_train, idx_dev, idx_test if has_test else np.empty(0, dtype=np.int64))
    return out


# --------------------------------------------------------------------------------------------------
# Standardizer
# --------------------------------------------------------------------------------------------------

class Standardizer:
    """``x_norm = (x - mu) / sigma`` per feature (row), with mu and sigma from the training set only.

    The seeds' formulas over the m training examples (axis 1)::

        mu    = (1/m) sum_i x(i)
        sigma = sqrt((1/m) sum_i (x(i) - mu)^2)      (population std)

    Zero-variance features (``sigma <= eps * max(1, |mu|)``, i.e. constant up to rounding) get
    ``sigma = 1``: they map to ``x - mu`` (0 on the training set) and nothing divides by zero. Their
    mask is ``zero_variance_``. ``transform`` applies the SAME mu and sigma to any set (dev, test, new
    data): it never sees dev/test statistics unless you ``fit`` on them. ``to_dict``/``from_dict``
    save and restore it with a model.
    """

    def __init__(self, eps: float = 1e-8):
        self.eps = V.check_real(eps, "eps", 0.0)
        self.mean_: Optional[np.ndarray] = None
        self.std_: Optional[np.ndarray] = None
        self.zero_variance_: Optional[np.ndarray] = None

    @property
    def fitted(self) -> bool:
        return self.mean_ is not None

    @property
    def n_features(self) -> Optional[int]:
        return None if self.mean_ is None else int(self.mean_.shape[0])

    def fit(self, X_train) -> "Standardizer":
        X = V.as_float_array(X_train, "X_train").astype(np.float64, copy=False)
        mu = X.mean(axis=1, keepdims=True)
        sigma = np.sqrt(np.mean((X - mu) ** 2, axis=1, keepdims=True))
        zero = sigma <= self.eps * np.maximum(1.0, np.abs(mu))
        self.mean_ = mu
        self.std_ = np.where(zero, 1.0, sigma)
        self.zero_variance_ = zero[:, 0].copy()
        return self

    def _check(self, X, name: str) -> np.ndarray:
        if self.mean_ is None:
            raise ValueError("this Standardizer is not fitted yet: call fit(X_train) first")
        X = V.as_float_array(X, name)
        if X.shape[0] != self.mean_.shape[0]:
            raise ValueError(f"{name} has {X.shape[0]} features (rows) but the Standardizer was fitted on "
                             f"{self.mean_.shape[0]}")
        return X

    def transform(self, X) -> np.ndarray:
        X = self._check(X, "X")
        return ((X - self.mean_) / self.std_).astype(X.dtype, copy=False)

    def fit_transform(self, X_train) -> np.ndarray:
        return self.fit(X_train).transform(X_train)

    def inverse_transform(self, X_norm) -> np.ndarray:
        X = self._check(X_norm, "X_norm")
        return (X * self.std_ + self.mean_).astype(X.dtype, copy=False)

    def to_dict(self) -> dict:
        """Plain-Python state: {"eps", "mean", "std", "zero_variance"} (lists), for saving with a model."""
        if self.mean_ is None or self.std_ is None or self.zero_variance_ is None:
            raise ValueError("this Standardizer is not fitted yet: nothing to save")
        return {
            "eps": self.eps,
            "mean": self.mean_[:, 0].tolist(),
            "std": self.std_[:, 0].tolist(),
            "zero_variance": self.zero_variance_.tolist(),
        }

    @classmethod
    def from_dict(cls, d) -> "Standardizer":
        if not hasattr(d, "__getitem__") or not hasattr(d, "keys"):
            raise TypeError(f"from_dict expects a dict, got {type(d).__name__}")
        missing = [k for k in ("mean", "std") if k not in d]
        if missing:
            raise ValueError(f"Standardizer state is missing {missing}")
        s = cls(eps=d.get("eps", 1e-8))

        def numbers_(key):  # real numbers only: no strings NumPy would parse, no booleans
            a = V.as_array(d[key], key, ndim=None)
            if a.dtype == np.bool_ or a.ndim > 2 or (a.ndim == 2 and a.shape[1] != 1):
                raise ValueError(f"{key} must be a list of numbers, got {str(d[key])[:60]}")
            return a.astype(np.float64).reshape(-1)

        mu, sd = numbers_("mean"), numbers_("std")
        if mu.shape != sd.shape:
            raise ValueError(f"mean and std have different lengths ({mu.size} vs {sd.size})")
        if np.any(sd <= 0):
            raise ValueError("std entries must be > 0")
        s.mean_ = mu.reshape(-1, 1).copy()
        s.std_ = sd.reshape(-1, 1).copy()
        zv = d.get("zero_variance")
        if zv is None:
            s.zero_variance_ = np.zeros(mu.size, dtype=bool)
        else:
            z = V.as_array(zv, "zero_variance", ndim=1)
            if not np.all((z == 0) | (z == 1)):
                raise ValueError("zero_variance must hold booleans")
            s.zero_variance_ = z.astype(bool)
        if s.zero_variance_.size != mu.size:
            raise ValueError("zero_variance has the wrong length")
        return s

    def __repr__(self) -> str:
        return f"Standardizer(eps={self.eps!r}, n_features={self.n_features})"


# --------------------------------------------------------------------------------------------------
# distribution shift
# --------------------------------------------------------------------------------------------------

class DistributionShiftWarning(UserWarning):
    """Two splits look as if they came from different distributions (the seeds: make sure dev and
    test come from the same distribution as the data the model will see)."""


def _ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic D = sup_x |F_a(x) - F_b(x)| and its asymptotic p-value."""
    a = np.sort(a)
    b = np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    d = float(np.max(np.abs(fa - fb)))
    ne = a.size * b.size / (a.size + b.size)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d  # Stephens' correction
    if lam < 1e-3:
        return d, 1.0
    k = np.arange(1, 101)
    p = 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * (k * lam) ** 2))
    return d, float(min(1.0, max(0.0, p)))


@dataclass
class ShiftReport:
    """Per-feature comparison of a reference set (a) and another set (b).

    smd: |mu_a - mu_b| / pooled sigma, pooled sigma = sqrt((sigma_a^2 + sigma_b^2) / 2)
    var_ratio: sigma_b^2 / sigma_a^2;  ks, ks_pvalue: two-sample Kolmogorov-Smirnov.
    flagged: smd > threshold, or var_ratio outside var_ratio_bounds, or ks_pvalue < ks_alpha.
    """

    names: list
    smd: np.ndarray
    var_ratio: np.ndarray
    ks: np.ndarray
    ks_pvalue: np.ndarray
    flagged: np.ndarray
    reasons: list
    threshold: float
    var_ratio_bounds: tuple
    ks_alpha: float
    m_a: int = 0
    m_b: int = 0

    @property
    def shifted(self) -> bool:
        return bool(np.any(self.flagged))

    def __bool__(self) -> bool:
        return self.shifted

    @property
    def flagged_names(self) -> list:
        return [n for n, f in zip(self.names, self.flagged) if f]

    def worst(self, k: int = 3) -> list:
        """Names of the k flagged features with the largest shift (smd, then KS)."""
        idx = [i for i in np.lexsort((-self.ks, -self.smd)) if self.flagged[i]]
        return [self.names[i] for i in idx[:k]]

    def __str__(self) -> str:
        head = f"{'feature':<16}{'smd':>9}{'var ratio':>11}{'KS':>8}{'KS p':>10}  flag"
        lines = [f"distribution shift check: reference m={self.m_a}, other m={self.m_b}, "
                 f"threshold smd>{self.threshold:g}, var ratio outside "
                 f"[{self.var_ratio_bounds[0]:g}, {self.var_ratio_bounds[1]:g}], KS p<{self.ks_alpha:g}",
                 head, "-" * len(head)]
        for i, n in enumerate(self.names):
            flag = ("SHIFT (" + ", ".join(self.reasons[i]) + ")") if self.flagged[i] else ""
            lines.append(f"{str(n)[:15]:<16}{self.smd[i]:>9.3f}{self.var_ratio[i]:>11.3f}"
                         f"{self.ks[i]:>8.3f}{self.ks_pvalue[i]:>10.2g}  {flag}")
        n_f = int(np.sum(self.flagged))
        lines.append(f"{n_f} of {len(self.names)} feature(s) flagged" +
                     (f"; worst: {', '.join(map(str, self.worst()))}" if n_f else ""))
        return "\n".join(lines)


def check_shift(X_train, X_other, names=None, threshold: float = 0.25, var_ratio_bounds=(0.5, 2.0),
                ks_alpha: float = 1e-3, warn: bool = True) -> ShiftReport:
    """Compare each feature of X_other (n_x, m_b) with X_train (n_x, m_a).

    Per feature: the standardized mean difference ``smd = |mu_a - mu_b| / sqrt((s_a^2 + s_b^2)/2)``
    (population std), the variance ratio ``s_b^2 / s_a^2`` and the two-sample KS statistic with its
    asymptotic p-value. A feature is flagged when ``smd > threshold`` (0.25 by default, a common
    balance threshold), when the variance ratio falls outside ``var_ratio_bounds`` or when the KS
    p-value is below ``ks_alpha``. If any feature is flagged and ``warn`` is true, a
    ``DistributionShiftWarning`` names the worst ones. Needs at least 2 examples in each set; small
    sets give noisy statistics.
    """
    A = V.as_float_array(X_train, "X_train").astype(np.float64, copy=False)
    B = V.as_float_array(X_other, "X_other").astype(np.float64, copy=False)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"X_train has {A.shape[0]} features but X_other has {B.shape[0]}")
    if A.shape[1] < 2 or B.shape[1] < 2:
        raise ValueError(f"each set needs at least 2 examples, got {A.shape[1]} and {B.shape[1]}")
    threshold = V.check_real(threshold, "threshold", 0.0, lo_open=True)
    ks_alpha = V.check_real(ks_alpha, "ks_alpha", 0.0, 1.0)
    if not isinstance(var_ratio_bounds, (tuple, list)) or len(var_ratio_bounds) != 2:
        raise TypeError("var_ratio_bounds must be a (low, high) pair")
    lo = V.check_real(var_ratio_bounds[0], "var_ratio_bounds[0]", 0.0)
    hi = V.check_real(var_ratio_bounds[1], "var_ratio_bounds[1]", 0.0)
    if not lo < 1.0 < hi:
        raise ValueError(f"var_ratio_bounds must satisfy low < 1 < high, got {var_ratio_bounds}")
    n = A.shape[0]
    if names is None:
        names = [f"x{i}" for i in range(n)]
    else:
        if isinstance(names, str) or not hasattr(names, "__len__"):
            raise TypeError("names must be a sequence of feature names")
        names = [str(s) for s in names]
        if len(names) != n:
            raise ValueError(f"names has {len(names)} entries but there are {n} features")

    mu_a, mu_b = A.mean(axis=1), B.mean(axis=1)
    va, vb = A.var(axis=1), B.var(axis=1)
    pooled = np.sqrt((va + vb) / 2.0)
    diff = np.abs(mu_a - mu_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        smd = np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1.0), np.where(diff > 0, np.inf, 0.0))
        vr = np.where(va > 0, vb / np.where(va > 0, va, 1.0), np.where(vb > 0, np.inf, 1.0))
    ks = np.empty(n)
    kp = np.empty(n)
    for i in range(n):
        ks[i], kp[i] = _ks_2samp(A[i], B[i])
    reasons = []
    for i in range(n):
        r = []
        if smd[i] > threshold:
            r.append(f"smd {smd[i]:.2f}")
        if not lo <= vr[i] <= hi:
            r.append(f"var ratio {vr[i]:.2f}")
        if kp[i] < ks_alpha:
            r.append(f"KS {ks[i]:.2f}")
        reasons.append(r)
    flagged = np.array([bool(r) for r in reasons])
    rep = ShiftReport(names, smd, vr, ks, kp, flagged, reasons, threshold, (lo, hi), ks_alpha,
                      A.shape[1], B.shape[1])
    if warn and rep.shifted:
        worst = rep.worst(3)
        detail = "; ".join(f"{w} ({', '.join(reasons[names.index(w)])})" for w in worst)
        warnings.warn(
            f"{int(flagged.sum())} of {n} feature(s) look shifted between the two sets; worst: {detail}. "
            "Dev/test should come from the same distribution as the training data (and as the data "
            "the model will see).",
            DistributionShiftWarning, stacklevel=2)
    return rep


# --------------------------------------------------------------------------------------------------
# augmentation
# --------------------------------------------------------------------------------------------------

def _image_shape(image_shape, n: int) -> tuple[int, int, int]:
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3):
        raise TypeError(f"image_shape must be (H, W) or (H, W, C), got {image_shape!r}")
    dims = [V.check_positive_int(d, "image_shape entries", 1) for d in image_shape]
    if len(dims) == 2:
        dims.append(1)
    if dims[0] * dims[1] * dims[2] != n:
        raise ValueError(f"image_shape {tuple(image_shape)} has {dims[0] * dims[1] * dims[2]} values per image "
                         f"but X has {n} rows")
    return dims[0], dims[1], dims[2]


def _to_images(X: np.ndarray, hwc) -> np.ndarray:
    return X.T.reshape((X.shape[1],) + tuple(hwc))  # (m, H, W, C), each column in C order


def _to_columns(imgs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(imgs.reshape(imgs.shape[0], -1).T)


_FLIP_AXES = {"horizontal": 2, "vertical": 1}  # in (m, H, W, C)


def _check_flips(flips) -> tuple:
    if flips is None:
        return ()
    if isinstance(flips, str):
        flips = (flips,)
    if not isinstance(flips, (tuple, list)):
        raise TypeError(f"flips must be a string or a tuple of 'horizontal'/'vertical', got {flips!r}")
    for f in flips:
        if f not in _FLIP_AXES:
            raise ValueError(f"unknown flip {f!r}; use 'horizontal' and/or 'vertical'")
    return tuple(dict.fromkeys(flips))


def flip_images(X, image_shape, direction: str = "horizontal") -> np.ndarray:
    """Flip every image (column of X, flattened in C order from ``image_shape``) left-right
    ("horizontal") or up-down ("vertical"). Returns a new array; flipping twice gives X back."""
    X = V.as_array(X, "X")
    hwc = _image_shape(image_shape, X.shape[0])
    (d,) = _check_flips(direction)
    return _to_columns(np.flip(_to_images(X, hwc), axis=_FLIP_AXES[d]))


def shift_images(X, image_shape, dy, dx) -> np.ndarray:
    """Shift image i down by dy[i] and right by dx[i] pixels (negative: up/left), filling with zeros
    (a crop of the zero-padded image). dy, dx: ints or length-m integer arrays."""
    X = V.as_array(X, "X")
    H, W, C = _image_shape(image_shape, X.shape[0])
    m = X.shape[1]
    try:
        dy = np.broadcast_to(np.asarray(dy), (m,))
        dx = np.broadcast_to(np.asarray(dx), (m,))
    except ValueError:
        raise ValueError(f"dy and dx must be integers or length-m ({m}) integer arrays") from None
    if not (np.issubdtype(dy.dtype, np.integer) and np.issubdtype(dx.dtype, np.integer)):
        raise TypeError("dy and dx must be integers")
    # a shift by H rows (W columns) or more leaves only zeros: clip, so the padding stays image-sized
    dy = np.clip(dy.astype(np.int64), -H, H)
    dx = np.clip(dx.astype(np.int64), -W, W)
    s = int(max(np.max(np.abs(dy)), np.max(np.abs(dx)), 0))
    imgs = _to_images(X, (H, W, C))
    if s == 0:
        return _to_columns(imgs.copy())
    P = np.zeros((m, H + 2 * s, W + 2 * s, C), dtype=imgs.dtype)
    P[:, s:s + H, s:s + W, :] = imgs
    # out[i, r, c] = img[i, r - dy, c - dx] = P[i, r - dy + s, c - dx + s]
    rows = (s - dy)[:, None] + np.arange(H)[None, :]
    cols = (s - dx)[:, None] + np.arange(W)[None, :]
    out = P[np.arange(m)[:, None, None], rows[:, :, None], cols[:, None, :], :]
    return _to_columns(out)


def _check_copies(copies, include_original) -> int:
    copies = V.check_positive_int(copies, "copies", 0)
    V.check_bool(include_original, "include_original")
    if copies == 0 and not include_original:
        raise ValueError("copies=0 with include_original=False would return no data")
    return copies


def _with_labels(X_aug, Y, m, reps):
    if Y is None:
        return X_aug
    return X_aug, np.tile(Y, (1, reps))


def augment_images(X, image_shape, flips=("horizontal",), max_shift: int = 0, noise_std: float = 0.0,
                   copies: int = 1, rng=None, include_original: bool = True, Y=None):
    """Data augmentation for image-shaped columns (the seeds: flips, crops, distortions).

    X is (H*W*C, m), each column an image of ``image_shape`` (H, W) or (H, W, C), flattened in C order.
    Each of the ``copies`` augmented copies of every image applies, independently per image:
    each flip in ``flips`` ("horizontal", "vertical") with probability 1/2; a shift by integers dy, dx
    drawn uniformly from [-max_shift, max_shift] with zero padding (a crop of the padded image); and
    Gaussian noise of std ``noise_std``. ``rng``: int seed, Generator or None (seeded => reproducible).

    Returns X_aug of shape (n, m * (copies + include_original)): the originals first (if included),
    then copy 1 of every image, copy 2, ... With ``Y=`` (n_y, m) returns (X_aug, Y_aug), the labels
    repeated in the same order. X is not modified.
    """
    X = V.as_float_array(X, "X")
    n, m = X.shape
    H, W, C = _image_shape(image_shape, n)
    fl = _check_flips(flips)
    max_shift = V.check_positive_int(max_shift, "max_shift", 0)
    if max_shift >= max(H, W):
        raise ValueError(f"max_shift={max_shift} would shift images of size {H}x{W} entirely out of frame")
    noise_std = V.check_real(noise_std, "noise_std", 0.0)

    def one_copy(gen):
        imgs = _to_images(X, (H, W, C)).copy()
        for f in fl:
            sel = gen.random(m) < 0.5
            imgs[sel] = np.flip(imgs[sel], axis=_FLIP_AXES[f])
        cols = _to_columns(imgs)
        if max_shift > 0:
            dy = gen.integers(-max_shift, max_shift + 1, size=m)
            dx = gen.integers(-max_shift, max_shift + 1, size=m)
            cols = shift_images(cols, (H, W, C), dy, dx)
        if noise_std > 0:
            cols = cols + gen.normal(0.0, noise_std, size=cols.shape).astype(cols.dtype, copy=False)
        return cols

    return _augmented(X, Y, copies, include_original, rng, one_copy)


def augment_noise(X, std: float, copies: int = 1, rng=None, include_original: bool = True, Y=None):
    """Augment feature vectors with Gaussian noise: each copy is ``X + N(0, std^2)``.

    Returns X_aug (n_x, m * (copies + include_original)), originals first; with ``Y=`` returns
    (X_aug, Y_aug) with the labels repeated to match. X is not modified.
    """
    X = V.as_float_array(X, "X")
    std = V.check_real(std, "std", 0.0)
    return _augmented(X, Y, copies, include_original, rng,
                      lambda gen: X + gen.normal(0.0, std, size=X.shape).astype(X.dtype, copy=False))


def _augmented(X, Y, copies, include_original, rng, one_copy):
    """The originals (if included) then ``copies`` outputs of ``one_copy(gen)``, as columns; with Y, the labels
    repeated to match."""
    m = X.shape[1]
    copies = _check_copies(copies, include_original)
    if Y is not None:
        Y = V.as_array(Y, "Y", cols=m)
    gen = V.as_generator(rng)
    parts = [X.copy()] if include_original else []
    parts += [one_copy(gen) for _ in range(copies)]
    return _with_labels(np.concatenate(parts, axis=1), Y, m, len(parts))
