import numpy as np
import pytest

from cascade.online.tensors import (
    INT_NULL,
    CatalogTensors,
    EncodedLayout,
    RawColumn,
    RawLayout,
    build_dictionaries,
    decode_strings,
    dictionary_columns,
    encode_strings,
    pack_encoded,
    pack_raw,
    string_dictionary,
    unpack_encoded,
    unpack_raw,
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


def _dicts(columns):
    return build_dictionaries(columns, dictionary_columns(LAYOUT), [c.name for c in LAYOUT.lists])


def test_raw_round_trip_keeps_values_nulls_and_large_ids():
    columns = _columns()
    dicts = _dicts(columns)
    packed = pack_raw(columns, LAYOUT, 3, dicts)
    assert packed["item_int"].dtype == np.int64 and packed["item_int"][1, 1] == INT_NULL
    assert packed["item_list"].shape == (3, 2) and packed["item_list_widths"].tolist() == [2]
    # no BYTES tensors: strings and lists travel as INT64 dictionary codes
    assert all(t.dtype != object for t in packed.values())
    assert packed["item_str"].dtype == np.int64 and packed["item_list"].dtype == np.int64
    out = unpack_raw(packed, LAYOUT, dicts)
    assert out["item_id"].tolist() == [2**60 + 7, 5, 9]
    assert np.isnan(out["first_seen"][1]) and out["first_seen"][2] == 300.0
    assert out["category"].tolist() == ["a", None, "é"]
    assert out["genres"].tolist() == [["Drama", "Comedy"], [None, None], ["Ação", None]]
    np.testing.assert_array_equal(out["available"], [1.0, 0.0, 1.0])


def test_raw_round_trip_with_zero_rows():
    empty = {name: values[:0] for name, values in _columns().items()}
    dicts = _dicts(empty)
    out = unpack_raw(pack_raw(empty, LAYOUT, 0, dicts), LAYOUT, dicts)
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
        pack_raw(columns, LAYOUT, 3, _dicts(_columns()))


def test_string_dictionary_is_sorted_unique_and_null_free():
    values = np.array(["b", None, "a", "b", float("nan"), ""], dtype=object)
    dictionary = string_dictionary(values)
    assert dictionary.tolist() == ["a", "b"]
    codes = encode_strings(values, dictionary)
    assert codes.dtype == np.int64 and codes.tolist() == [2, 0, 1, 2, 0, 0]  # 0 = null
    assert decode_strings(codes, dictionary).tolist() == ["b", None, "a", "b", None, None]


def test_dictionary_is_deterministic_across_builders():
    values = np.array(["z", "é", "a", None], dtype=object)
    shuffled = values[[3, 1, 0, 2]]
    assert string_dictionary(values).tolist() == string_dictionary(shuffled).tolist()


def test_list_dictionary_and_non_string_categories():
    genres = _columns()["genres"]
    assert string_dictionary(genres, is_list=True).tolist() == ["Ação", "Comedy", "Drama"]
    ints = np.array([3, 1, 3], dtype=object)  # e.g. integer categories: coded by their str form
    d = string_dictionary(ints)
    assert decode_strings(encode_strings(ints, d), d).tolist() == ["3", "1", "3"]


def test_encode_rejects_values_missing_from_the_dictionary():
    with pytest.raises(KeyError):
        encode_strings(np.array(["x"], dtype=object), np.array(["a"], dtype=object))


def test_catalog_gather_equals_packing_the_rows():
    columns = _columns()
    dicts = _dicts(columns)
    catalog = CatalogTensors.build("v1", columns, LAYOUT, 3, dicts)
    rows = np.array([2, 0, 2])
    got = catalog.gather(rows, None, columns["item_id"][rows], LAYOUT)
    want = pack_raw({k: v[rows] for k, v in columns.items()}, LAYOUT, 3, dicts)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    # batch-local list width: rows without long lists get a narrower block
    narrow = catalog.gather(np.array([1, 2]), None, columns["item_id"][[1, 2]], LAYOUT)
    assert narrow["item_list_widths"].tolist() == [1] and narrow["item_list"].shape == (2, 1)


def test_catalog_gather_nulls_missing_items_but_keeps_their_ids():
    columns = _columns()
    catalog = CatalogTensors.build("v1", columns, LAYOUT, 3, _dicts(columns))
    ids = np.array([5, 777], dtype=np.int64)
    got = catalog.gather(np.array([1, 0]), np.array([False, True]), ids, LAYOUT)
    assert got["item_int"][1].tolist() == [777, INT_NULL]
    assert np.isnan(got["item_float"][1]).all() and got["item_str"][1].tolist() == [0]
    assert (got["item_list"][1] == 0).all()
