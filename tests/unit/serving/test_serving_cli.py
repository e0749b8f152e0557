"""``cascade serve`` argument handling that needs no server: repository resolution and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cascade.errors import NotFoundError
from cascade.serving.cli import resolve_repository, serve


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path))
    return tmp_path


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(serve)
    return app


def test_explicit_repository_is_used_as_given(home: Path) -> None:
    assert resolve_repository(home / "x") == home / "x"


def test_no_export_yet_says_to_run_export(home: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no export yet .*LATEST_EXPORT.*cascade export"):
        resolve_repository(None)


def test_empty_pointer(home: Path) -> None:
    (home / "LATEST_EXPORT").write_text("\n")
    with pytest.raises(NotFoundError, match="is empty"):
        resolve_repository(None)


def test_pointer_to_missing_folder(home: Path) -> None:
    (home / "LATEST_EXPORT").write_text(str(home / "exports" / "v7"))
    with pytest.raises(NotFoundError, match=r"latest export .*v7 .*is not a folder"):
        resolve_repository(None)


def test_pointer_absolute_and_relative(home: Path) -> None:
    export = home / "exports" / "v3"
    export.mkdir(parents=True)
    (home / "LATEST_EXPORT").write_text(f"{export}\n")
    assert resolve_repository(None) == export
    (home / "LATEST_EXPORT").write_text("exports/v3")
    assert resolve_repository(None) == export


def test_cli_without_export_exits_non_zero_with_message(home: Path) -> None:
    result = CliRunner().invoke(_app(), [])
    assert result.exit_code == 1
    assert "no export yet" in result.stderr and "cascade export" in result.stderr


def test_cli_missing_repository_exits_non_zero_naming_it(home: Path) -> None:
    result = CliRunner().invoke(_app(), [str(home / "nope"), "--http-port", "18000"])
    assert result.exit_code == 1
    assert f"model repository {home / 'nope'} does not exist" in result.stderr


def test_cli_rejects_unknown_model_control_mode(home: Path) -> None:
    result = CliRunner().invoke(_app(), [str(home), "--model-control-mode", "auto"])
    assert result.exit_code == 2


def test_cli_rejects_equal_ports(home: Path) -> None:
    result = CliRunner().invoke(_app(), [str(home), "--http-port", "9000", "--grpc-port", "9000"])
    assert result.exit_code == 1
    assert "must differ" in result.stderr


def test_an_export_root_serves_its_model_repository(home: Path) -> None:
    export = home / "exports" / "demo"
    (export / "model_repository").mkdir(parents=True)
    (export / "export.json").write_text("{}")
    assert resolve_repository(export) == export / "model_repository"
    (home / "LATEST_EXPORT").write_text(f"{export}\n")
    assert resolve_repository(None) == export / "model_repository"


def test_an_export_is_served_as_a_bundle_a_plain_repository_as_is(home: Path) -> None:
    from cascade.serving.cli import export_root_of

    export = home / "exports" / "v1"
    (export / "model_repository").mkdir(parents=True)
    (export / "export.json").write_text("{}")
    assert export_root_of(export) == export
    assert export_root_of(export / "model_repository") == export
    (home / "LATEST_EXPORT").write_text(str(export))
    assert export_root_of(None) == export
    plain = home / "repo"
    plain.mkdir()
    assert export_root_of(plain) is None


def test_a_stop_signal_is_not_swallowed_by_except_exception() -> None:
    """SIGTERM raises _StopRequested wherever `cascade serve` is, including inside the first
    rollout, whose optional steps catch Exception (a model outside the ensemble that fails to
    load); the pod must still stop (seen in a smoke of the pod's command path before the fix)."""
    import signal

    from cascade.serving.cli import _StopRequested

    stopped = False
    try:
        try:
            raise _StopRequested(signal.SIGTERM)
        except Exception:  # noqa: BLE001 - what the rollout does
            pass
    except _StopRequested as stop:
        stopped = str(stop) == "SIGTERM"
    assert stopped
