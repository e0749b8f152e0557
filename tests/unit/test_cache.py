from pathlib import Path

from cascade.cache import hash_files, inputs_hash, is_fresh, mark_done, replace_dir


def test_bytecode_and_markers_do_not_change_the_hash(tmp_path: Path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    before = hash_files([tmp_path / "pkg"])
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\x00compiled")
    mark_done(tmp_path / "pkg", "k")
    assert hash_files([tmp_path / "pkg"]) == before
    (tmp_path / "pkg" / "mod.py").write_text("x = 2\n")
    assert hash_files([tmp_path / "pkg"]) != before


def test_step_freshness(tmp_path: Path):
    key = inputs_hash(a=1, path=tmp_path)
    assert not is_fresh(tmp_path, key)
    mark_done(tmp_path, key)
    assert is_fresh(tmp_path, key)
    assert not is_fresh(tmp_path, inputs_hash(a=2, path=tmp_path))


def test_replace_dir_swaps_in_the_new_folder_and_leaves_no_backup(tmp_path: Path):
    target, new = tmp_path / "out", tmp_path / "new"
    target.mkdir(); (target / "old.txt").write_text("old")
    new.mkdir(); (new / "fresh.txt").write_text("fresh")
    replace_dir(new, target)
    assert [p.name for p in target.iterdir()] == ["fresh.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
