import numpy as np

from cascade.online.tensors import EncodedLayout, pack_encoded, unpack_encoded


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


def test_encoded_layout_with_zero_rows():
    layout = EncodedLayout(categorical=("a",), continuous=("c",), lists=(("h", 2),))
    cat, cont, lists = pack_encoded({"a": np.zeros(0), "c": np.zeros(0), "h": np.zeros((0, 2))}, layout, 0)
    assert cat.shape == (0, 1) and cont.shape == (0, 1) and lists.shape == (0, 2)
    assert unpack_encoded(cat, cont, lists, layout)["h"].shape == (0, 2)
