"""dk.data: splits, Standardizer, distribution-shift check, augmentation, one-hot."""
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from dnnkit import data


def _xy(m=1000, n_x=3, seed=0, p1=0.3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_x, m))
    Y = (rng.random((1, m)) < p1).astype(float)
    return X, Y


# ---------------------------------------------------------------------------------------- split

def test_split_explicit_fractions_sizes_and_unpacking():
    X, Y = _xy(1000)
    s = data.split(X, Y, fractions=(0.7, 0.15, 0.15), seed=0)
    X_tr, Y_tr, X_dev, Y_dev, X_te, Y_te = s
    assert X_tr.shape == (3, 700) and Y_tr.shape == (1, 700)
    assert X_dev.shape == (3, 150) and Y_dev.shape == (1, 150)
    assert X_te.shape == (3, 150) and Y_te.shape == (1, 150)
    assert s.X_train is X_tr and isinstance(s, data.Split)


def test_split_two_fractions_means_no_test():
    X, Y = _xy(100)
    s = data.split(X, Y, fractions=(0.8, 0.2), seed=1)
    assert s.X_train.shape[1] == 80 and s.X_dev.shape[1] == 20
    assert s.X_test is None and s.Y_test is None


def test_split_without_Y():
    X, _ = _xy(50)
    s = data.split(X, fractions=(0.6, 0.2, 0.2), seed=1)
    assert s.Y_train is None and s.Y_dev is None and s.Y_test is None
    assert s.X_train.shape[1] + s.X_dev.shape[1] + s.X_test.shape[1] == 50


@pytest.mark.parametrize("m, expected", [
    (100, (60, 20, 20)),
    (10_000, (6000, 2000, 2000)),
    (100_000, (80_000, 10_000, 10_000)),
    (500_000, (480_000, 10_000, 10_000)),
    (1_000_000, (980_000, 10_000, 10_000)),
    (3_000_000, (2_940_000, 30_000, 30_000)),
], ids=["100", "10k", "100k", "500k", "1M", "3M"])
def test_auto_rule_sizes(m, expected):
    fr = data.auto_fractions(m)
    assert abs(sum(fr) - 1) < 1e-12
    counts = data._counts(fr, m)
    assert tuple(counts) == expected


def test_auto_rule_applied_by_split():
    X, Y = _xy(500)
    s = data.split(X, Y, seed=0)  # fractions="auto"
    assert (s.X_train.shape[1], s.X_dev.shape[1], s.X_test.shape[1]) == (300, 100, 100)


def test_split_no_overlap_full_coverage_and_content():
    m = 257
    X = np.arange(2 * m, dtype=float).reshape(2, m)
    Y = X[:1] * 10
    s = data.split(X, Y, fractions=(0.5, 0.3, 0.2), seed=3, stratify=False)
    tr, dv, te = s.indices
    allidx = np.concatenate([tr, dv, te])
    assert np.array_equal(np.sort(allidx), np.arange(m))
    assert_array_equal(s.X_train, X[:, tr])
    assert_array_equal(s.Y_dev, Y[:, dv])  # X and Y stay aligned
    assert_array_equal(s.X_test, X[:, te])


def test_split_seed_reproducible_and_seed_matters():
    X, Y = _xy(300)
    a = data.split(X, Y, seed=42)
    b = data.split(X, Y, seed=42)
    c = data.split(X, Y, seed=43)
    for u, v in zip(a, b):
        assert_array_equal(u, v)
    assert not np.array_equal(a.X_train, c.X_train)


def test_split_no_shuffle_is_contiguous():
    X = np.arange(10, dtype=float).reshape(1, 10)
    s = data.split(X, X.copy(), fractions=(0.6, 0.2, 0.2), shuffle=False)
    assert_array_equal(s.X_train[0], np.arange(6))
    assert_array_equal(s.X_dev[0], [6, 7])
    assert_array_equal(s.X_test[0], [8, 9])


def test_split_stratified_binary_auto():
    X, Y = _xy(1000, p1=0.1)
    s = data.split(X, Y, fractions=(0.6, 0.2, 0.2), seed=0)  # auto: Y is a 0/1 row
    n1 = int(Y.sum())
    for Yp, frac in ((s.Y_train, 0.6), (s.Y_dev, 0.2), (s.Y_test, 0.2)):
        assert abs(Yp.sum() - frac * n1) <= 1.0


def test_split_stratified_one_hot():
    rng = np.random.default_rng(1)
    labels = rng.choice(3, size=600, p=[0.6, 0.3, 0.1])
    Y = data.one_hot(labels, 3)
    X = rng.standard_normal((2, 600))
    s = data.split(X, Y, fractions=(0.5, 0.25, 0.25), seed=2)
    counts = Y.sum(axis=1)
    for Yp, frac in ((s.Y_train, 0.5), (s.Y_dev, 0.25), (s.Y_test, 0.25)):
        assert np.all(np.abs(Yp.sum(axis=1) - frac * counts) <= 1.0)


def test_split_stratify_with_explicit_labels_and_regression_targets_not_stratified():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 400))
    Yr = rng.standard_normal((1, 400))  # regression: auto does not stratify, no error
    data.split(X, Yr, seed=0)
    lab = (X[0] > 1.0).astype(int)
    s = data.split(X, Yr, fractions=(0.5, 0.5), stratify=lab, seed=0)
    tr, dv, _ = s.indices
    assert abs(lab[tr].sum() - lab[dv].sum()) <= 1
    with pytest.raises(ValueError, match="class labels"):
        data.split(X, Yr, stratify=True)


def test_split_every_split_nonempty_for_small_m():
    X = np.ones((1, 3))
    s = data.split(X, fractions=(0.9, 0.05, 0.05), seed=0)
    assert [len(i) for i in s.indices] == [1, 1, 1]


def test_split_too_small_m_raises():
    with pytest.raises(ValueError, match="too few|cannot fill"):
        data.split(np.ones((1, 2)), fractions=(0.6, 0.2, 0.2))


def test_split_fractions_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        data.split(np.ones((1, 10)), fractions=(0.6, 0.2, 0.3))


def test_split_fraction_out_of_range():
    with pytest.raises(ValueError):
        data.split(np.ones((1, 10)), fractions=(1.2, -0.2))
    with pytest.raises(ValueError, match="train fraction"):
        data.split(np.ones((1, 10)), fractions=(0.0, 1.0))


def test_split_fractions_wrong_length_or_type():
    with pytest.raises(ValueError):
        data.split(np.ones((1, 10)), fractions=(1.0,))
    with pytest.raises(ValueError):
        data.split(np.ones((1, 10)), fractions="half")
    with pytest.raises(TypeError):
        data.split(np.ones((1, 10)), fractions=0.5)


def test_split_rejects_bad_X_and_Y():
    with pytest.raises(ValueError, match="2-D"):
        data.split(np.ones(10))
    with pytest.raises(ValueError, match="empty"):
        data.split(np.ones((2, 0)))
    with pytest.raises(ValueError, match="NaN"):
        data.split(np.array([[1.0, np.nan, 2.0, 3.0, 4.0]]))
    with pytest.raises(ValueError, match="examples"):
        data.split(np.ones((2, 10)), np.ones((1, 9)))
    with pytest.raises(TypeError):
        data.split(np.array([["a", "b"]]))
    with pytest.raises(TypeError):
        data.split(np.ones((2, 10)), seed="x")


def test_split_does_not_mutate_inputs():
    X, Y = _xy(100)
    X0, Y0 = X.copy(), Y.copy()
    s = data.split(X, Y, seed=0)
    s.X_train[...] = 0
    assert_array_equal(X, X0)
    assert_array_equal(Y, Y0)


# ---------------------------------------------------------------------------------------- Standardizer

def test_standardizer_train_is_normalized_with_population_std():
    rng = np.random.default_rng(0)
    X = rng.normal([[5.0], [-3.0]], [[2.0], [0.1]], size=(2, 500))
    st = data.Standardizer().fit(X)
    assert_allclose(st.mean_[:, 0], X.mean(axis=1), rtol=1e-12)
    assert_allclose(st.std_[:, 0], X.std(axis=1, ddof=0), rtol=1e-12)  # seeds' 1/m formula
    Z = st.transform(X)
    assert_allclose(Z.mean(axis=1), 0, atol=1e-12)
    assert_allclose(Z.std(axis=1), 1, rtol=1e-12)


def test_standardizer_uses_train_statistics_on_shifted_test():
    rng = np.random.default_rng(1)
    X_train = rng.normal(0.0, 1.0, size=(3, 400))
    X_test = rng.normal(3.0, 2.0, size=(3, 400))  # shifted and scaled
    st = data.Standardizer().fit(X_train)
    Zt = st.transform(X_test)
    assert np.all(Zt.mean(axis=1) > 2.5)  # NOT zero-mean: dev/test statistics never used
    assert np.all(Zt.std(axis=1) > 1.5)
    assert_allclose(Zt, (X_test - X_train.mean(1, keepdims=True)) / X_train.std(1, keepdims=True), rtol=1e-12)


def test_standardizer_zero_variance_feature_maps_to_zero():
    X = np.vstack([np.full(50, 0.1), np.linspace(0, 1, 50)])
    st = data.Standardizer().fit(X)
    Z = st.transform(X)
    assert np.all(np.isfinite(Z))
    assert_allclose(Z[0], 0.0, atol=1e-15)
    assert st.zero_variance_.tolist() == [True, False]
    assert st.std_[0, 0] == 1.0


def test_standardizer_roundtrip_dict_and_inverse():
    rng = np.random.default_rng(2)
    X = rng.normal(10, 3, size=(4, 100))
    st = data.Standardizer().fit(X)
    d = st.to_dict()
    assert isinstance(d["mean"], list) and isinstance(d["std"], list)
    st2 = data.Standardizer.from_dict(d)
    X_new = rng.normal(10, 3, size=(4, 7))
    assert_allclose(st2.transform(X_new), st.transform(X_new), rtol=0, atol=0)
    assert_allclose(st.inverse_transform(st.transform(X_new)), X_new, rtol=1e-12)
    assert_allclose(st.fit_transform(X), st.transform(X))


def test_standardizer_transform_before_fit_raises():
    with pytest.raises(ValueError, match="not fitted"):
        data.Standardizer().transform(np.ones((2, 3)))
    with pytest.raises(ValueError, match="not fitted"):
        data.Standardizer().to_dict()


def test_standardizer_wrong_n_x_raises():
    st = data.Standardizer().fit(np.random.default_rng(0).standard_normal((3, 10)))
    with pytest.raises(ValueError, match="features"):
        st.transform(np.ones((2, 10)))


def test_standardizer_rejects_nan_and_bad_dict():
    with pytest.raises(ValueError, match="NaN"):
        data.Standardizer().fit(np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="missing"):
        data.Standardizer.from_dict({"mean": [0.0]})
    with pytest.raises(ValueError, match="> 0"):
        data.Standardizer.from_dict({"mean": [0.0], "std": [0.0]})


def test_standardizer_does_not_mutate():
    X = np.random.default_rng(0).standard_normal((2, 20)) * 5 + 1
    X0 = X.copy()
    st = data.Standardizer()
    st.fit_transform(X)
    st.inverse_transform(X)
    assert_array_equal(X, X0)


# ---------------------------------------------------------------------------------------- check_shift

def test_check_shift_flags_shifted_feature_and_warns():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 2000))
    B = rng.standard_normal((3, 2000))
    B[1] += 1.0  # feature "b" shifted by one std
    with pytest.warns(data.DistributionShiftWarning, match="speed"):
        rep = data.check_shift(A, B, names=["age", "speed", "size"])
    assert rep.flagged.tolist() == [False, True, False]
    assert rep.flagged_names == ["speed"]
    assert rep.smd[1] > 0.8 and rep.ks[1] > 0.3
    text = str(rep)
    assert "speed" in text and "SHIFT" in text


def test_check_shift_quiet_on_same_distribution_split():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 6000)) * [[1], [10], [0.1], [3], [1]] + [[0], [5], [1], [-2], [0]]
    s = data.split(X, fractions=(0.5, 0.5), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = data.check_shift(s.X_train, s.X_dev)
    assert not rep.shifted and not bool(rep)
    assert np.all(rep.smd < 0.1)


def test_check_shift_flags_variance_change():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((1, 3000))
    B = 3 * rng.standard_normal((1, 3000))
    with pytest.warns(data.DistributionShiftWarning):
        rep = data.check_shift(A, B)
    assert rep.flagged[0] and rep.var_ratio[0] > 4


def test_ks_statistic_matches_sklearn_free_reference():
    # D for two known samples computed by hand: F_a and F_b differ most at x=2 -> |3/4 - 1/4| = 0.5
    d, p = data._ks_2samp(np.array([1.0, 2, 2, 5]), np.array([2.5, 3, 4, 0.5]))
    assert d == pytest.approx(0.5)
    assert 0 < p <= 1


def test_check_shift_validation():
    A = np.ones((2, 10))
    with pytest.raises(ValueError, match="features"):
        data.check_shift(A, np.ones((3, 10)))
    with pytest.raises(ValueError, match="at least 2"):
        data.check_shift(A, np.ones((2, 1)))
    with pytest.raises(ValueError, match="names"):
        data.check_shift(A, A, names=["a"])
    with pytest.raises(ValueError):
        data.check_shift(A, A, threshold=0)


# ---------------------------------------------------------------------------------------- augmentation

def _images(m=5, shape=(4, 6, 3), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((int(np.prod(shape)), m)), shape


def test_flip_twice_is_identity_and_flip_is_left_right():
    X, shape = _images()
    F = data.flip_images(X, shape, "horizontal")
    assert not np.allclose(F, X)
    assert_array_equal(data.flip_images(F, shape, "horizontal"), X)
    img = X[:, 0].reshape(shape)
    assert_array_equal(F[:, 0].reshape(shape), img[:, ::-1, :])
    V = data.flip_images(X, shape, "vertical")
    assert_array_equal(V[:, 0].reshape(shape), img[::-1, :, :])


def test_shift_images_zero_pads():
    X = np.arange(1, 10, dtype=float).reshape(9, 1)  # one 3x3 image [[1,2,3],[4,5,6],[7,8,9]]
    S = data.shift_images(X, (3, 3), dy=1, dx=-1)
    assert_array_equal(S[:, 0].reshape(3, 3), [[0, 0, 0], [2, 3, 0], [5, 6, 0]])


def test_augment_images_shapes_and_labels_follow():
    X, shape = _images(m=5)
    Y = np.arange(5, dtype=float).reshape(1, 5)
    Xa, Ya = data.augment_images(X, shape, flips=("horizontal", "vertical"), max_shift=1, noise_std=0.1,
                                 copies=3, rng=0, Y=Y)
    assert Xa.shape == (X.shape[0], 20) and Ya.shape == (1, 20)
    assert_array_equal(Xa[:, :5], X)  # originals first
    assert_array_equal(Ya, np.tile(Y, (1, 4)))
    Xb = data.augment_images(X, shape, copies=2, rng=0, include_original=False)
    assert Xb.shape == (X.shape[0], 10)


def test_augment_images_flip_only_gives_original_or_mirror():
    X, shape = _images(m=40, shape=(5, 5))
    Xa = data.augment_images(X, shape, flips="horizontal", copies=1, rng=3, include_original=False)
    F = data.flip_images(X, shape)
    same = np.all(Xa == X, axis=0)
    mirrored = np.all(Xa == F, axis=0)
    assert np.all(same | mirrored)
    assert 5 < mirrored.sum() < 35  # about half are flipped


def test_augment_images_seed_reproducible():
    X, shape = _images()
    a = data.augment_images(X, shape, max_shift=2, noise_std=0.5, copies=2, rng=7)
    b = data.augment_images(X, shape, max_shift=2, noise_std=0.5, copies=2, rng=np.random.default_rng(7))
    c = data.augment_images(X, shape, max_shift=2, noise_std=0.5, copies=2, rng=8)
    assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_augment_images_does_not_mutate():
    X, shape = _images()
    X0 = X.copy()
    data.augment_images(X, shape, flips=("horizontal", "vertical"), max_shift=1, noise_std=1.0, rng=0)
    assert_array_equal(X, X0)


def test_augment_images_validation():
    X, shape = _images()
    with pytest.raises(ValueError, match="rows"):
        data.augment_images(X, (4, 4))
    with pytest.raises(ValueError, match="flip"):
        data.augment_images(X, shape, flips=("diagonal",))
    with pytest.raises(ValueError, match="max_shift"):
        data.augment_images(X, shape, max_shift=6)
    with pytest.raises(ValueError):
        data.augment_images(X, shape, noise_std=-1.0)
    with pytest.raises(ValueError, match="no data"):
        data.augment_images(X, shape, copies=0, include_original=False)
    with pytest.raises(ValueError, match="examples"):
        data.augment_images(X, shape, Y=np.ones((1, 4)))
    with pytest.raises(TypeError):
        data.augment_images(X, shape, rng="seed")


def test_augment_noise():
    X = np.zeros((3, 100))
    Y = np.ones((1, 100))
    Xa, Ya = data.augment_noise(X, 0.5, copies=2, rng=0, Y=Y)
    assert Xa.shape == (3, 300) and Ya.shape == (1, 300)
    assert_array_equal(Xa[:, :100], 0)
    assert Xa[:, 100:].std() == pytest.approx(0.5, rel=0.1)
    assert_array_equal(data.augment_noise(X, 0.5, rng=1), data.augment_noise(X, 0.5, rng=1))
    with pytest.raises(ValueError):
        data.augment_noise(X, -0.1)
    with pytest.raises(ValueError, match="NaN"):
        data.augment_noise(np.array([[np.nan]]), 0.1)


# ---------------------------------------------------------------------------------------- one-hot

def test_one_hot_roundtrip():
    lab = np.array([2, 0, 1, 2])
    Y = data.one_hot(lab)
    assert Y.shape == (3, 4) and Y.dtype == np.float64
    assert_array_equal(Y[:, 0], [0, 0, 1])
    assert_array_equal(data.from_one_hot(Y), lab)
    assert data.one_hot(lab.reshape(1, -1), n_classes=5).shape == (5, 4)
    assert_array_equal(data.from_one_hot(np.array([[0.2, 0.7, 1.0]])), [0, 1, 1])


def test_one_hot_validation():
    with pytest.raises(ValueError, match="integer"):
        data.one_hot([0.5, 1])
    with pytest.raises(ValueError, match=">= 0"):
        data.one_hot([-1, 1])
    with pytest.raises(ValueError, match="out of range"):
        data.one_hot([0, 3], n_classes=3)
    with pytest.raises(ValueError, match="empty"):
        data.one_hot([])


def test_shift_images_far_out_of_frame_is_zeros_without_a_huge_buffer():
    # the zero padding was sized by the largest shift: dy=10**5 asked for an 894 GiB array (MemoryError)
    from dnnkit.data import shift_images

    X = np.arange(1.0, 13.0).reshape(4, 3)  # three 2x2 images
    np.testing.assert_array_equal(shift_images(X, (2, 2), 10**5, 0), np.zeros((4, 3)))
    np.testing.assert_array_equal(shift_images(X, (2, 2), [0, -10**12, 2], [0, 0, 0]),
                                  np.column_stack([X[:, 0], np.zeros(4), np.zeros(4)]))
    with pytest.raises(ValueError, match="length-m"):
        shift_images(X, (2, 2), [1, 2], 0)
