"""Each op against hand-computed expectations."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.preprocessing.graph import materialize
from cascade.preprocessing.ops import (
    Age, Bucketize, Categorify, Clip, FillMissing, FitContext, HashBucket, ListSlice, LogOp, Normalize, hash_values,
)
from cascade.preprocessing.schema import InputColumn
from cascade.preprocessing.values import canonicalize

CTX = FitContext(train_rows=10, timestamp_min=0, timestamp_max=1_000_000)


def col(values, dtype="string", is_list=False):
    return canonicalize(values, InputColumn(name="c", entity="item", dtype=dtype, is_list=is_list))


def fitted(op, values, weights=None):
    weights = np.ones(values.n_rows) if weights is None else np.asarray(weights, dtype=np.float64)
    op.fit(values, weights, CTX)
    return op


def test_categorify_frequency_threshold_null_and_oov():
    values = col(np.array(["a", "b", "a", "c", None, "a", "b", "d"], dtype=object))
    op = fitted(Categorify(min_frequency=2, num_oov_buckets=2), values)
    # counts a:3 b:2 c:1 d:1 -> vocab [a, b] at 1 + 2 oov buckets = 3, 4
    assert list(op.vocabulary()) == ["a", "b"]
    assert op.cardinality() == 5
    out = op.transform(col(np.array(["a", "b", None, "c", "zz"], dtype=object))).data
    oov = 1 + (hash_values(np.array(["c", "zz"], dtype=object)) % np.uint64(2)).astype(np.int64)
    assert out.tolist() == [3, 4, 0, *oov.tolist()]
    assert set(oov.tolist()) <= {1, 2}


def test_categorify_ties_weights_and_max_size():
    values = col(np.array([5, 7, 5, 7, 9], dtype=np.int64), "int64")
    op = fitted(Categorify(num_oov_buckets=1), values)
    assert op.vocabulary().tolist() == [5, 7, 9]  # ties by ascending value
    assert op.transform(col(np.array([9, 5, 7, 11]), "int64")).data.tolist()[:3] == [4, 2, 3]
    weighted = fitted(Categorify(num_oov_buckets=0), values, [0.5, 1, 0.5, 1, 5])
    assert weighted.vocabulary().tolist() == [9, 7, 5]  # 9:5, 7:2, 5:1
    assert weighted.transform(col(np.array([11, 9]), "int64")).data.tolist() == [0, 1]  # no OOV buckets -> 0
    capped = fitted(Categorify(num_oov_buckets=3, max_size=1), values)
    assert capped.vocabulary().tolist() == [5] and capped.cardinality() == 5
    zero = fitted(Categorify(), values, [0, 0, 0, 0, 0])
    assert zero.cardinality() == 2


def test_categorify_same_code_for_int_float_and_object_inputs():
    op = fitted(Categorify(num_oov_buckets=4), col(np.array([1, 2, 2]), "int64"))
    as_int = op.transform(col(np.array([2, 1, 99, 12345]), "int64")).data
    as_float = op.transform(col(np.array([2.0, 1.0, 99.0, 12345.0, np.nan]), "int64")).data
    as_obj = op.transform(col(np.array([2, 1, 99, 12345, None], dtype=object), "int64")).data
    assert as_int.tolist() == as_float[:4].tolist() == as_obj[:4].tolist()
    assert as_float[4] == as_obj[4] == 0


def test_hash_bucket():
    data = np.array(["x", "y", None], dtype=object)
    out = HashBucket(num_buckets=10).transform(col(data)).data
    expected = 1 + (hash_values(np.array(["x", "y"], dtype=object)) % np.uint64(10)).astype(np.int64)
    assert out.tolist() == [*expected.tolist(), 0]
    assert HashBucket(num_buckets=10).cardinality() == 11


def test_bucketize():
    out = Bucketize(boundaries=[0, 10]).transform(col(np.array([-1, 0, 5, 10, 11, np.nan]), "float64")).data
    assert out.tolist() == [1, 2, 2, 3, 3, 0]
    assert Bucketize(boundaries=[0, 10]).cardinality() == 4
    with pytest.raises(ValueError):
        Bucketize(boundaries=[3, 1])


def test_normalize_weighted_with_clip_and_nulls():
    values = col(np.array([1.0, 2.0, 3.0, np.nan]), "float64")
    op = fitted(Normalize(), values, [1, 1, 2, 5])
    mean, std = 2.25, np.sqrt(0.6875)  # (1 + 2 + 2*3) / 4; ((1.25^2 + 0.25^2 + 2 * 0.75^2) / 4)
    out = op.transform(values).data
    np.testing.assert_allclose(out[:3], (np.array([1, 2, 3]) - mean) / std)
    assert out[3] == 0.0  # null -> the mean
    clipped = fitted(Normalize(clip=1.0), values, [1, 1, 2, 5]).transform(col(np.array([100.0, -100.0]), "float64"))
    assert clipped.data.tolist() == [1.0, -1.0]
    assert op.get_state()[0]["min"] == 1.0 and op.get_state()[0]["max"] == 3.0


def test_log_fill_clip_age():
    out = LogOp().transform(col(np.array([0.0, np.e - 1, -3.0, np.nan]), "float64")).data
    np.testing.assert_allclose(out[:3], [0.0, 1.0, 0.0])
    assert np.isnan(out[3])
    values = col(np.array([1.0, np.nan, 3.0]), "float64")
    assert FillMissing(value=-1).transform(values).data.tolist() == [1.0, -1.0, 3.0]
    assert fitted(FillMissing(strategy="mean"), values).transform(values).data.tolist() == [1.0, 2.0, 3.0]
    assert Clip(lower=0, upper=2).transform(col(np.array([-1.0, 1.0, 5.0]), "float64")).data.tolist() == [0, 1, 2]
    age = fitted(Age(), col(np.array([0]), "int64"))
    assert age.transform(col(np.array([1_000_000 - 2 * 86400]), "int64")).data.tolist() == [2.0]
    assert age.rename("first_seen") == "first_seen_age"


def test_list_slice_and_padding():
    lists = np.empty(4, dtype=object)
    lists[:] = [[1, 2, 3], [], None, [4]]
    values = col(lists, "int64", is_list=True)
    sliced = ListSlice(length=2).transform(values)
    op = fitted(Categorify(num_oov_buckets=0), col(np.array([1, 2, 3, 4, 4]), "int64"))
    codes = op.transform(sliced)
    out = materialize(codes, "categorical", 2)
    c = {v: op.transform(col(np.array([v]), "int64")).data[0] for v in (1, 2, 4)}
    assert out.tolist() == [[c[1], c[2]], [0, 0], [0, 0], [c[4], 0]]
    two_d = col(np.array([[1, 2, 3], [-1, -1, -1], [-1, -1, -1], [4, -1, -1]]), "int64", is_list=True)
    assert materialize(op.transform(ListSlice(length=2).transform(two_d)), "categorical", 2).tolist() == out.tolist()
