"""dk.datasets: generated toy sets (shapes, labels, seeds) and the CSV / NPZ loaders."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from dnnkit import datasets


def _is_binary_row(Y, m):
    return Y.shape == (1, m) and Y.dtype == np.float64 and set(np.unique(Y)) <= {0.0, 1.0}


@pytest.mark.parametrize("fn", [datasets.circles, datasets.moons], ids=["circles", "moons"])
def test_binary_sets_shapes_labels_seeds(fn):
    X, Y = fn(m=301, seed=0)
    assert X.shape == (2, 301) and X.dtype == np.float64
    assert _is_binary_row(Y, 301)
    assert Y.sum() in (150, 151)  # both classes, balanced
    X2, Y2 = fn(m=301, seed=0)
    assert_array_equal(X, X2)
    assert_array_equal(Y, Y2)
    X3, _ = fn(m=301, seed=1)
    assert not np.array_equal(X, X3)


def test_circles_geometry():
    X, Y = datasets.circles(m=400, noise=0.0, factor=0.5, seed=0)
    r = np.sqrt((X ** 2).sum(axis=0))
    assert_allclose(r[Y[0] == 0], 1.0, atol=1e-12)
    assert_allclose(r[Y[0] == 1], 0.5, atol=1e-12)


@pytest.mark.parametrize("fn, kw", [(datasets.spirals, dict(n_classes=4)), (datasets.blobs, dict(centers=4))],
                         ids=["spirals", "blobs"])
def test_multiclass_sets_one_hot_and_ids(fn, kw):
    X, Y = fn(m=203, seed=0, **kw)
    assert X.shape == (2, 203) and Y.shape == (4, 203)
    assert_array_equal(Y.sum(axis=0), 1.0)
    assert set(np.unique(Y)) == {0.0, 1.0}
    assert np.all(Y.sum(axis=1) >= 50)
    X2, Yid = fn(m=203, seed=0, one_hot=False, **kw)
    assert_array_equal(X2, X)
    assert Yid.shape == (1, 203) and Yid.dtype == np.float64
    assert_array_equal(Yid[0], np.argmax(Y, axis=0))


def test_blobs_given_centers_and_features():
    C = np.array([[0.0, 0, 0], [100, 100, 100]])
    X, Y = datasets.blobs(m=50, centers=C, n_features=3, std=0.1, seed=0, one_hot=False)
    assert X.shape == (3, 50)
    assert np.all(np.abs(X[:, Y[0] == 1] - 100) < 1)
    with pytest.raises(ValueError, match="n_features"):
        datasets.blobs(centers=C, n_features=2)


def test_football_train_and_dev():
    X_tr, Y_tr, X_dev, Y_dev = datasets.football(seed=0)
    assert X_tr.shape == (2, 211) and Y_tr.shape == (1, 211)
    assert X_dev.shape == (2, 200) and Y_dev.shape == (1, 200)
    assert _is_binary_row(Y_tr, 211) and _is_binary_row(Y_dev, 200)
    assert np.all(np.abs(X_tr) <= 0.75) and np.all(np.abs(X_dev) <= 0.75)
    assert 0.3 < Y_tr.mean() < 0.7
    again = datasets.football(seed=0)
    for a, b in zip((X_tr, Y_tr, X_dev, Y_dev), again):
        assert_array_equal(a, b)
    assert datasets.football(m=50, seed=1)[2].shape == (2, 50)


def test_football_is_noisy_around_a_nonlinear_boundary():
    X, Y, _, _ = datasets.football(m=(4000, 10), seed=3)
    clean = (X[1] > datasets._football_boundary(X[0])).astype(float)
    noise = np.mean(clean != Y[0])
    assert 0.02 < noise < 0.2  # label noise to overfit, but the boundary dominates
    # a linear boundary cannot match the wavy one: the best straight line through the data misfits
    from numpy.linalg import lstsq
    A = np.vstack([X, np.ones(X.shape[1])]).T
    w = lstsq(A, 2 * clean - 1, rcond=None)[0]
    assert np.mean((A @ w > 0) != clean) > 0.03


def test_generators_validate():
    with pytest.raises(TypeError):
        datasets.circles(m=10.5)
    with pytest.raises(ValueError):
        datasets.circles(m=1)
    with pytest.raises(ValueError):
        datasets.circles(factor=1.5)
    with pytest.raises(ValueError):
        datasets.moons(noise=-1)
    with pytest.raises(ValueError):
        datasets.spirals(m=2, n_classes=3)
    with pytest.raises(TypeError):
        datasets.football(m="big")
    with pytest.raises(TypeError):
        datasets.blobs(seed=1.5)


# ---------------------------------------------------------------------------------------- load_csv

def test_load_csv_with_header_and_label(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,label\n1,2,0\n3,4,1\n\n5,6,1\n")
    X, Y = datasets.load_csv(p)
    assert_array_equal(X, [[1, 3, 5], [2, 4, 6]])
    assert_array_equal(Y, [[0, 1, 1]])
    X2, Y2 = datasets.load_csv(p, label_column="a")
    assert_array_equal(Y2, [[1, 3, 5]])
    assert_array_equal(X2, [[2, 4, 6], [0, 1, 1]])


def test_load_csv_no_header_one_hot_and_no_labels(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("2;1.5;0.5\n0;2.5;1e-1\n1;3;0\n")
    X, Y = datasets.load_csv(p, label_column=0, delimiter=";", one_hot=True)
    assert X.shape == (2, 3)
    assert_array_equal(Y, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    X3, Y3 = datasets.load_csv(p, label_column=None, delimiter=";")
    assert X3.shape == (3, 3) and Y3 is None


def test_load_csv_ragged_rows(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("1,2,3\n4,5\n")
    with pytest.raises(ValueError, match="line 2.*ragged"):
        datasets.load_csv(p)


def test_load_csv_non_numeric_cell(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("1,2,3\n4,five,6\n")
    with pytest.raises(ValueError, match="line 2, column 2.*five"):
        datasets.load_csv(p, header=False)


def test_load_csv_nan_cell(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("1,2,3\n4,nan,6\n")
    with pytest.raises(ValueError, match="NaN"):
        datasets.load_csv(p)


def test_load_csv_empty_and_missing(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("\n\n")
    with pytest.raises(ValueError, match="empty"):
        datasets.load_csv(p)
    q = tmp_path / "h.csv"
    q.write_text("a,b\n")
    with pytest.raises(ValueError, match="no data"):
        datasets.load_csv(q)
    with pytest.raises(ValueError, match="no such file"):
        datasets.load_csv(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="out of range"):
        datasets.load_csv(_write(tmp_path, "1,2\n"), label_column=5)


def _write(tmp_path, text):
    p = tmp_path / "w.csv"
    p.write_text(text)
    return p


# ---------------------------------------------------------------------------------------- load_npz

def test_load_npz_columns_and_rows(tmp_path):
    X = np.arange(12.0).reshape(3, 4)
    Y = np.array([0, 1, 1, 0])
    p = tmp_path / "d.npz"
    np.savez(p, X=X, Y=Y)
    Xl, Yl = datasets.load_npz(p)
    assert_array_equal(Xl, X)
    assert Yl.shape == (1, 4) and Yl.dtype == np.float64
    q = tmp_path / "r.npz"
    np.savez(q, feats=X.T, target=Y)
    Xr, Yr = datasets.load_npz(q, x_key="feats", y_key="target", examples_as="rows")
    assert_array_equal(Xr, X)
    assert_array_equal(Yr, Y.reshape(1, -1))
    Xn, Yn = datasets.load_npz(p, y_key=None)
    assert Yn is None


def test_load_npz_refuses_pickled_objects(tmp_path):
    p = tmp_path / "o.npz"
    np.savez(p, X=np.array([{"a": 1}, None], dtype=object), Y=np.ones(2))
    with pytest.raises(ValueError, match="pickle"):
        datasets.load_npz(p)


def test_load_npz_validation(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, X=np.ones((2, 5)), Y=np.ones((1, 4)))
    with pytest.raises(ValueError, match="examples"):
        datasets.load_npz(p)
    with pytest.raises(ValueError, match="no array 'Z'"):
        datasets.load_npz(p, x_key="Z")
    with pytest.raises(ValueError, match="examples_as"):
        datasets.load_npz(p, examples_as="cols")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not read"):
        datasets.load_npz(bad)


def test_load_csv_bad_encodings_and_fields_raise_value_error(tmp_path):
    # a binary / Latin-1 file raised UnicodeDecodeError and an over-long cell csv.Error; a UTF-8 BOM (as
    # Excel writes) stuck to the first column's name
    p = tmp_path / "f.csv"
    for content in (b"\xff\xfe\x00\x01", "a\xe9,b\n1,2\n".encode("latin-1"), b"1," + b"9" * 200_000 + b"\n"):
        p.write_bytes(content)
        with pytest.raises(ValueError, match="not a"):
            datasets.load_csv(p)
    p.write_bytes("\ufeffx,label\n1,0\n2,1\n".encode("utf-8"))
    X, Y = datasets.load_csv(p, label_column="label")
    assert_array_equal(X, [[1.0, 2.0]])
    X, Y = datasets.load_csv(p, label_column="x")
    assert_array_equal(Y, [[1.0, 2.0]])


def test_load_csv_one_hot_of_a_huge_label_raises_value_error(tmp_path):
    # a label of 1e12 asked one_hot for a 14.6 TiB matrix (MemoryError)
    p = tmp_path / "f.csv"
    p.write_text("1,1e12\n2,1\n")
    with pytest.raises(ValueError, match="too large"):
        datasets.load_csv(p, one_hot=True)
