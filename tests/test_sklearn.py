"""dnnkit.sklearn: scikit-learn's estimator checks, Pipeline, GridSearchCV, label types, row-major data."""
import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import dnnkit as dk  # noqa: E402
from dnnkit.sklearn import DNNClassifier, DNNRegressor  # noqa: E402


@parametrize_with_checks([DNNClassifier(random_state=0), DNNRegressor(random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _moons(n=200, seed=0):
    X, Y = dk.datasets.moons(n, seed=seed)
    return X.T, Y[0]


def test_classifier_string_labels_proba_and_score():
    X, y = _moons()
    labels = np.where(y > 0, "french", "other")
    clf = DNNClassifier(hidden_layer_sizes=(20, 3), max_iter=300, random_state=0).fit(X, labels)
    assert list(clf.classes_) == ["french", "other"] and clf.n_features_in_ == 2
    P = clf.predict_proba(X)
    assert P.shape == (200, 2) and np.allclose(P.sum(axis=1), 1)
    assert set(clf.predict(X)) <= {"french", "other"}
    assert clf.score(X, labels) > 0.9
    d = clf.decision_function(X)
    assert d.shape == (200,) and np.all((d > 0) == (P[:, 1] > 0.5))
    assert clf.network_.output == "sigmoid" and clf.network_.layer_dims == (2, 20, 3, 1)


def test_classifier_multiclass_softmax():
    Xc, Y = dk.datasets.blobs(m=150, seed=0, one_hot=False)
    X, y = Xc.T, Y[0].astype(int) + 10
    clf = DNNClassifier(max_iter=200, random_state=1).fit(X, y)
    assert list(clf.classes_) == [10, 11, 12] and clf.network_.output == "softmax"
    assert clf.predict_proba(X).shape == (150, 3) and clf.decision_function(X).shape == (150, 3)
    assert clf.score(X, y) > 0.9


def test_regressor_fits_a_smooth_function():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(300, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 + 100.0
    reg = DNNRegressor(hidden_layer_sizes=(32, 16), max_iter=300, random_state=0).fit(X, y)
    assert reg.score(X, y) > 0.9 and reg.predict(X).shape == (300,)
    assert reg.network_.loss == "mse" and reg.y_mean_ == pytest.approx(y.mean())


def test_reproducible_with_random_state_and_early_stopping():
    X, y = _moons()
    a = DNNClassifier(max_iter=500, early_stopping=True, n_iter_no_change=5, random_state=3).fit(X, y)
    b = DNNClassifier(max_iter=500, early_stopping=True, n_iter_no_change=5, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.network_.theta, b.network_.theta)
    assert a.n_iter_ <= 500 and a.history_.best_epoch is not None
    assert not np.isnan(a.history_.dev_cost[-1])


def test_standardize_uses_training_statistics():
    X, y = _moons()
    clf = DNNClassifier(max_iter=5, random_state=0).fit(X * 100 + 7, y)
    np.testing.assert_allclose(clf.normalizer_.mean_.ravel(), (X * 100 + 7).mean(axis=0))
    assert clf.network_.normalizer is clf.normalizer_
    assert DNNClassifier(max_iter=5, standardize=False, random_state=0).fit(X, y).normalizer_ is None


def test_pipeline_and_cross_val():
    X, y = _moons()
    pipe = Pipeline([("scale", StandardScaler()), ("dnn", DNNClassifier(max_iter=200, standardize=False,
                                                                        random_state=0))])
    pipe.fit(X, y)
    assert pipe.score(X, y) > 0.9
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8


def test_grid_search():
    X, y = _moons(150)
    grid = GridSearchCV(DNNClassifier(max_iter=150, random_state=0),
                        {"l2": [0.0, 0.7], "hidden_layer_sizes": [(8,), (20, 3)]}, cv=3)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"l2", "hidden_layer_sizes"}
    assert grid.best_estimator_.score(X, y) > 0.85
    reg = GridSearchCV(DNNRegressor(max_iter=50, random_state=0), {"learning_rate": [0.01, 0.003]}, cv=2)
    reg.fit(X, X[:, 0] * 2.0)
    assert reg.best_params_["learning_rate"] in (0.01, 0.003)


def test_bad_hyperparameters_raise_at_fit():
    X, y = _moons(40)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        DNNClassifier(hidden_layer_sizes=(0,)).fit(X, y)
    with pytest.raises(ValueError, match="batch_size"):
        DNNClassifier(batch_size=-3).fit(X, y)
    with pytest.raises(ValueError, match="validation_fraction"):
        DNNClassifier(early_stopping=True, validation_fraction=1.5).fit(X, y)
    with pytest.raises(ValueError):
        DNNClassifier(optimizer="sgdx").fit(X, y)


def test_importable_and_usable_without_sklearn():
    import os
    import subprocess
    import sys

    code = ("import sys; sys.modules['sklearn'] = None\n"
            "import numpy as np, dnnkit.sklearn as m\n"
            "assert not m.HAVE_SKLEARN\n"
            "X = np.random.default_rng(0).standard_normal((60, 2)); y = (X[:, 0] > 0).astype(int)\n"
            "c = m.DNNClassifier(max_iter=100, random_state=0).fit(X, y)\n"
            "assert c.score(X, y) > 0.9 and c.get_params()['max_iter'] == 100\n"
            "r = m.DNNRegressor(max_iter=50, random_state=0).set_params(l2=0.1).fit(X, X[:, 0])\n"
            "assert r.score(X, X[:, 0]) > 0.5\n"
            "try:\n    m.DNNClassifier().predict(X)\nexcept ValueError as e:\n    print('ok', e)\n")
    env = dict(os.environ)
    import dnnkit  # the subprocess imports the same dnnkit as this test run (installed or in-tree)

    src = os.path.dirname(os.path.dirname(os.path.abspath(dnnkit.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok") and "not fitted" in r.stdout
