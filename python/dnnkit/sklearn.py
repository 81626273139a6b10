"""scikit-learn estimators on dnnkit's native engine: :class:`DNNClassifier` and :class:`DNNRegressor`.

They follow scikit-learn's conventions — ``X`` is ``(n_samples, n_features)`` (ROW-major; transposed to
dnnkit's columns internally), hyperparameters are ``__init__`` arguments stored as given, fitted state
ends with ``_`` — and pass ``sklearn.utils.estimator_checks.check_estimator`` (tests/test_sklearn.py), so
they work in ``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and the like.

scikit-learn is optional: with it installed the estimators derive from ``sklearn.base.BaseEstimator`` and
its mixins and validate inputs with ``sklearn.utils.validation``; without it this module still imports
and the estimators work on NumPy arrays with a minimal ``get_params``/``set_params``/``score`` of their own
(``pip install 'dnnkit[sklearn]'`` for the full protocol).

Classifier: any label type (``classes_`` sorted as ``np.unique``); two classes -> one sigmoid unit and
binary cross-entropy, more -> softmax and cross-entropy. Regressor: linear output and MSE on a
standardized target (mean and std of the training y; predictions are mapped back), one output.
Inputs are standardized with the training statistics when ``standardize=True`` (the Standardizer is kept
as ``normalizer_`` and ``network_.normalizer``).
"""
from __future__ import annotations

import numbers

import numpy as np

try:  # scikit-learn is a test / optional dependency only
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.validation import check_is_fitted as _sk_check_is_fitted

    try:
        from sklearn.utils.validation import validate_data as _sk_validate_data  # scikit-learn >= 1.6
    except ImportError:  # older scikit-learn
        def _sk_validate_data(est, X, y="no_validation", reset=True, **kw):
            return est._validate_data(X, y, reset=reset, **kw)
    from sklearn.utils.multiclass import check_classification_targets as _sk_check_targets

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised only without scikit-learn
    HAVE_SKLEARN = False
    import inspect

    class BaseEstimator:  # type: ignore[no-redef]
        """Minimal stand-in: get_params / set_params from the __init__ signature."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p for p in sig.parameters if p != "self")

        def get_params(self, deep=True):
            return {k: getattr(self, k) for k in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for k, v in params.items():
                if k not in valid:
                    raise ValueError(f"invalid parameter {k!r} for {type(self).__name__}")
                setattr(self, k, v)
            return self

    class ClassifierMixin:  # type: ignore[no-redef]
        _estimator_type = "classifier"

        def score(self, X, y, sample_weight=None):
            return float(np.average(self.predict(X) == np.asarray(y), weights=sample_weight))

    class RegressorMixin:  # type: ignore[no-redef]
        _estimator_type = "regressor"

        def score(self, X, y, sample_weight=None):
            y = np.asarray(y, dtype=np.float64)
            p = self.predict(X)
            u = np.average((y - p) ** 2, weights=sample_weight)
            v = np.average((y - np.average(y, weights=sample_weight)) ** 2, weights=sample_weight)
            return float(1.0 - u / v) if v > 0 else 0.0

__all__ = ["DNNClassifier", "DNNRegressor", "HAVE_SKLEARN"]


# ------------------------------------------------------------------------------------------------- helpers

class NotFittedError(ValueError, AttributeError):
    """Raised when predicting before fit (scikit-learn's own NotFittedError when it is installed)."""


def _check_fitted(est):
    if HAVE_SKLEARN:
        _sk_check_is_fitted(est, "network_")
    elif not hasattr(est, "network_"):
        raise NotFittedError(f"This {type(est).__name__} instance is not fitted yet. Call 'fit' first.")


def _validate(est, X, y=None, reset=True, classifier=False):
    if HAVE_SKLEARN:
        if y is None and not reset:
            return _sk_validate_data(est, X, reset=False, dtype=np.float64), None
        X, y = _sk_validate_data(est, X, y, reset=reset, dtype=np.float64, y_numeric=not classifier)
        return X, y
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D array, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("Input X contains NaN or infinity.")
    if reset:
        est.n_features_in_ = X.shape[1]
    elif X.shape[1] != est.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
                         f"{est.n_features_in_} features as input.")
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must be 1-D with {X.shape[0]} entries, got shape {y.shape}")
        if not classifier:
            y = y.astype(np.float64)
    return X, y


def _seed(random_state) -> int:
    if random_state is None or isinstance(random_state, (numbers.Integral, np.integer)):
        rs = np.random.RandomState(None if random_state is None else int(random_state))
    elif isinstance(random_state, np.random.RandomState):
        rs = random_state
    elif isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2 ** 31 - 1))
    else:
        raise ValueError(f"random_state must be None, an int, a RandomState or a Generator, got {random_state!r}")
    return int(rs.randint(0, 2 ** 31 - 1))


# ------------------------------------------------------------------------------------------------- base

class _DNNBase(BaseEstimator):
    _output = "sigmoid"

    def __init__(self, hidden_layer_sizes=(20, 3), activation="relu", learning_rate=0.01, max_iter=200,
                 batch_size="auto", optimizer="adam", l2=0.0, keep_prob=1.0, standardize=True,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, init=None,
                 random_state=None, verbose=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.l2 = l2
        self.keep_prob = keep_prob
        self.standardize = standardize
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.init = init
        self.random_state = random_state
        self.verbose = verbose

    # ---- subclasses: targets <-> dnnkit's Y
    def _targets(self, y):  # -> (Y (n_y, m), output, loss)
        raise NotImplementedError

    def _hidden(self):
        h = self.hidden_layer_sizes
        if isinstance(h, (numbers.Integral, np.integer)) and not isinstance(h, bool):
            h = (int(h),)
        try:
            h = tuple(int(v) for v in h)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes must be an int or a sequence of ints, got {h!r}") from None
        if any(v < 1 for v in h):
            raise ValueError(f"hidden_layer_sizes must be >= 1, got {self.hidden_layer_sizes!r}")
        return h

    def _batch(self, m):
        if self.batch_size == "auto":
            return min(200, m)
        if self.batch_size is None:
            return None
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (numbers.Integral, np.integer)) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size must be 'auto', None or an int >= 1, got {self.batch_size!r}")
        return min(int(self.batch_size), m)

    def _fit(self, X, Y, output, loss, stratify):
        import dnnkit as dk
        from .data import Standardizer, split

        Xc = np.ascontiguousarray(X.T)                      # (n_features, m): dnnkit's columns
        m = Xc.shape[1]
        seed = _seed(self.random_state)
        validation, es = None, None
        if self.early_stopping:
            vf = float(self.validation_fraction)
            if not 0.0 < vf < 1.0:
                raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
            if m >= 4:
                s = split(Xc, Y, fractions=(1.0 - vf, vf), seed=seed, stratify=stratify if stratify else False)
                Xc, Y, validation = s.X_train, s.Y_train, (s.X_dev, s.Y_dev)
                es = dk.EarlyStopping(monitor="dev_cost", patience=int(self.n_iter_no_change), restore_best=True)
        normalizer = Standardizer().fit(Xc) if self.standardize else None
        if normalizer is not None:
            Xc = normalizer.transform(Xc)
            if validation is not None:
                validation = (normalizer.transform(validation[0]), validation[1])
        dims = [Xc.shape[0], *self._hidden(), Y.shape[0]]
        net = dk.Network(dims, hidden=self.activation, output=output, loss=loss)
        net.initialize(self.init, rng=np.random.RandomState(seed))
        net.normalizer = normalizer
        history = net.fit(Xc, Y, epochs=int(self.max_iter), learning_rate=self.learning_rate,
                          batch_size=self._batch(Xc.shape[1]), optimizer=self.optimizer, l2=self.l2,
                          keep_prob=self.keep_prob, validation=validation, early_stopping=es, seed=seed,
                          verbose=bool(self.verbose))
        self.network_ = net
        self.normalizer_ = normalizer
        self.history_ = history
        self.n_iter_ = int(history.config.get("epochs_run", len(history)))
        self.loss_ = float(history.train_cost[-1]) if len(history) else float("nan")
        self.loss_curve_ = list(history.train_cost)
        return self

    def _forward(self, X):
        _check_fitted(self)
        X, _ = _validate(self, X, reset=False)
        Xc = np.ascontiguousarray(X.T)
        if self.normalizer_ is not None:
            Xc = self.normalizer_.transform(Xc)
        return self.network_.predict_proba(Xc)             # (n_y, m)


class DNNClassifier(ClassifierMixin, _DNNBase):
    """A fully-connected classifier trained by dnnkit (row-major X, any label type).

    hidden_layer_sizes: units per hidden layer (default (20, 3), the course's net). activation: relu,
    leaky_relu, tanh, sigmoid. learning_rate, max_iter (epochs), batch_size ("auto" = min(200, n), None =
    full batch, or an int), optimizer (gd, momentum, adam), l2 (the seeds' lambda), keep_prob (dropout),
    standardize (inputs, train statistics), early_stopping (hold out ``validation_fraction``, stratified;
    stop after ``n_iter_no_change`` epochs without a better dev cost; restore the best), init (None: He for
    relu, Glorot otherwise), random_state (init, shuffles, masks, split), verbose (progress bar).

    Fitted: ``classes_``, ``n_features_in_``, ``network_`` (a ``dnnkit.Network``), ``normalizer_``,
    ``history_``, ``n_iter_``, ``loss_``, ``loss_curve_``.
    """

    def fit(self, X, y):
        X, y = _validate(self, X, y, reset=True, classifier=True)
        if HAVE_SKLEARN:
            _sk_check_targets(y)
        classes, idx = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in the data, "
                             f"but the data contains only one class: {classes[0]!r}")
        self.classes_ = classes
        if classes.size == 2:
            Y, output, loss = idx.reshape(1, -1).astype(np.float64), "sigmoid", "bce"
        else:
            Y, output, loss = np.eye(classes.size)[:, idx], "softmax", "ce"
        return self._fit(X, Y, output, loss, stratify=True)

    def predict_proba(self, X):
        """(n_samples, n_classes) class probabilities, columns in the order of ``classes_``."""
        A = self._forward(X)
        if A.shape[0] == 1:
            return np.column_stack([1.0 - A[0], A[0]])
        return np.ascontiguousarray(A.T)

    def decision_function(self, X):
        """The output layer's pre-activation Z[L]: (n_samples,) log-odds of ``classes_[1]`` for two classes,
        (n_samples, n_classes) logits otherwise (monotone in ``predict_proba``)."""
        _check_fitted(self)
        X, _ = _validate(self, X, reset=False)
        Xc = np.ascontiguousarray(X.T)
        if self.normalizer_ is not None:
            Xc = self.normalizer_.transform(Xc)
        _, cache = self.network_.forward(Xc)
        Z = cache[f"Z{self.network_.L}"]
        return Z[0].copy() if Z.shape[0] == 1 else np.ascontiguousarray(Z.T)

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        proba = self.predict_proba(X)  # checks fitted first
        return self.classes_[np.argmax(proba, axis=1)]


class DNNRegressor(RegressorMixin, _DNNBase):
    """A fully-connected regressor trained by dnnkit (row-major X, one target; linear output, MSE).

    The same hyperparameters as :class:`DNNClassifier`, with ``hidden_layer_sizes`` default (20, 3). The
    target is standardized with the training mean and std (``y_mean_``, ``y_std_``) and predictions are
    mapped back. Fitted: ``n_features_in_``, ``network_``, ``normalizer_``, ``history_``, ``n_iter_``,
    ``loss_``, ``loss_curve_``, ``y_mean_``, ``y_std_``.
    """

    def fit(self, X, y):
        X, y = _validate(self, X, y, reset=True, classifier=False)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        self.y_mean_ = float(np.mean(y))
        std = float(np.std(y))
        self.y_std_ = std if std > 0 else 1.0
        Y = ((y - self.y_mean_) / self.y_std_).reshape(1, -1)
        return self._fit(X, Y, "linear", "mse", stratify=False)

    def predict(self, X):
        return self._forward(X)[0] * self.y_std_ + self.y_mean_
