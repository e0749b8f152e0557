"""`cascade serve`'s bundle repository (cascade/bundles/serve.py)."""

from __future__ import annotations

from pathlib import Path

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
