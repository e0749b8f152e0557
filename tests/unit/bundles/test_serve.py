"""`cascade serve`'s bundle repository (cascade/bundles/serve.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade.bundles.models import INFO_MODEL
from cascade.bundles.serve import prepare_repository


def test_a_fresh_repository_is_emptied_in_place(tmp_path: Path) -> None:
    """On Kubernetes the repository is an emptyDir's mount point (/export/repository): a restarted
    triton container must empty it, not remove it (rmdir of a mount point fails with EBUSY)."""
    repository = tmp_path / "repository"
    (repository / "ranking__old" / "1").mkdir(parents=True)
    (repository / "ranking__old" / "config.pbtxt").write_text("name: 'ranking__old'")
    (repository / ".stray").write_text("x")
    inode = repository.stat().st_ino
    assert prepare_repository(repository) == repository.resolve()
    assert repository.stat().st_ino == inode, "the folder itself is kept"
    assert sorted(p.name for p in repository.iterdir()) == [INFO_MODEL]
    assert (repository / INFO_MODEL / "1" / "model.py").is_file()


def test_one_interaction_log_for_every_bundle(tmp_path: Path, monkeypatch) -> None:
    """A bundle server points every bundle's `interactions` model at one log, outside the bundles:
    the model's own default (EXPORT/interaction_log) would split events across rollouts."""
    from cascade.bundles.serve import INTERACTION_LOG_ENV, default_interaction_log, interaction_log_env

    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(INTERACTION_LOG_ENV, raising=False)
    assert default_interaction_log() == str((tmp_path / "home" / "interaction_log").resolve())
    assert interaction_log_env(None) == {INTERACTION_LOG_ENV: str((tmp_path / "home" / "interaction_log").resolve())}
    monkeypatch.chdir(tmp_path)
    assert interaction_log_env("events") == {INTERACTION_LOG_ENV: str(tmp_path / "events")}  # relative -> absolute
    assert interaction_log_env("s3://bucket/events") == {INTERACTION_LOG_ENV: "s3://bucket/events"}
    monkeypatch.setenv(INTERACTION_LOG_ENV, "s3://bucket/k8s")  # Kubernetes sets it: it wins over the build folder
    assert interaction_log_env(None) == {INTERACTION_LOG_ENV: "s3://bucket/k8s"}


@pytest.mark.parametrize("value, message", [("", "--interaction-log is empty"),
                                            ("nope://bucket/events", "unknown scheme 'nope'")])
def test_a_bad_interaction_log_is_refused_before_the_server_starts(value: str, message: str) -> None:
    from cascade.bundles.serve import interaction_log_env
    from cascade.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=message) as error:
        interaction_log_env(value)
    assert "expected a folder or an object-store URL" in str(error.value)
