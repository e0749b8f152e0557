import numpy as np
import pytest

from cascade.online.tensors import (
    INT_NULL, EncodedLayout, RawColumn, RawLayout, pack_encoded, pack_raw, unpack_encoded, unpack_raw,
)

LAYOUT = RawLayout.from_columns([
    RawColumn("item_id", "int64", False),
    RawColumn("first_seen", "int64", False),
    RawColumn("price", "float64", False),
    RawColumn("available", "bool", False),
    RawColumn("category", "string", False),
    RawColumn("genres", "string", True),
])


def _columns():
    genres = np.empty(3, dtype=object)
    genres[:] = [np.array(["Drama", "Comedy"], dtype=object), np.array([], dtype=object), np.array(["Ação"], dtype=object)]
    return {
        "item_id": np.array([2**60 + 7, 5, 9], dtype=np.int64),  # beyond float64's exact range
        "first_seen": np.array([100.0, np.nan, 300.0]),
        "price": np.array([1.5, np.nan, 3.0]),
        "available": np.array([True, False, True]),
        "category": np.array(["a", None, "é"], dtype=object),
        "genres": genres,
    }


def test_layout_groups_columns_by_type():
    assert LAYOUT.ints == ("item_id", "first_seen")
    assert LAYOUT.floats == ("price", "available")
    assert LAYOUT.strings == ("category",)
    assert [c.name for c in LAYOUT.lists] == ["genres"]


def test_raw_round_trip_keeps_values_nulls_and_large_ids():
    packed = pack_raw(_columns(), LAYOUT, 3)
    assert packed["item_int"].dtype == np.int64 and packed["item_int"][1, 1] == INT_NULL
    assert packed["item_list"].shape == (3, 2) and packed["item_list_widths"].tolist() == [2]
    out = unpack_raw(packed, LAYOUT)
    assert out["item_id"].tolist() == [2**60 + 7, 5, 9]
    assert np.isnan(out["first_seen"][1]) and out["first_seen"][2] == 300.0
    assert out["category"].tolist() == ["a", None, "é"]
    assert out["genres"].tolist() == [["Drama", "Comedy"], [None, None], ["Ação", None]]
    np.testing.assert_array_equal(out["available"], [1.0, 0.0, 1.0])


def test_raw_round_trip_with_zero_rows():
    empty = {name: values[:0] for name, values in _columns().items()}
    out = unpack_raw(pack_raw(empty, LAYOUT, 0), LAYOUT)
    assert all(len(v) == 0 for v in out.values())


def test_encoded_round_trip():
    layout = EncodedLayout(categorical=("a", "b"), continuous=("c",), lists=(("h", 3), ("g", 2)))
    encoded = {
        "a": np.array([1, 2]), "b": np.array([3, 4]), "c": np.array([0.5, 1.5], dtype=np.float32),
        "h": np.array([[1, 2, 3], [4, 5, 6]]), "g": np.array([[7, 8], [9, 0]]),
    }
    cat, cont, lists = pack_encoded(encoded, layout, 2)
    assert cat.shape == (2, 2) and cont.shape == (2, 1) and lists.shape == (2, 5)
    back = unpack_encoded(cat, cont, lists, layout)
    for name, value in encoded.items():
        np.testing.assert_array_equal(back[name], value)
        assert back[name].flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("missing", ["item_id", "category"])
def test_pack_raw_requires_every_layout_column(missing):
    columns = _columns()
    del columns[missing]
    with pytest.raises(KeyError):
        pack_raw(columns, LAYOUT, 3)
