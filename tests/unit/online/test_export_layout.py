"""Where an export keeps its business rules: beside ``ranking`` (round 5 on), beside
``business_logic`` in an older export, which still serves with its own three models."""

from pathlib import Path

from cascade.online.export_layout import LEGACY_RULES_IN_EXPORT, RULES_IN_EXPORT, ExportLayout


def _write(root: Path, relative: Path) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("drop_seen: true\n")
    return path


def test_rules_are_read_beside_ranking(tmp_path: Path) -> None:
    current = _write(tmp_path, RULES_IN_EXPORT)
    assert ExportLayout(tmp_path).business_rules == current.resolve()


def test_an_export_from_before_round_5_keeps_its_rules_beside_business_logic(tmp_path: Path) -> None:
    legacy = _write(tmp_path, LEGACY_RULES_IN_EXPORT)
    assert ExportLayout(tmp_path).business_rules == legacy.resolve()
    current = _write(tmp_path, RULES_IN_EXPORT)  # both present: the current place wins
    assert ExportLayout(tmp_path).business_rules == current.resolve()


def test_a_missing_file_names_the_current_place(tmp_path: Path) -> None:
    assert ExportLayout(tmp_path).business_rules == (tmp_path / RULES_IN_EXPORT).resolve()
