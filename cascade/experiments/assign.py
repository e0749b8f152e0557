"""THE assignment of a user to a variant: the router, the tests, the SRM check and the outcome
report all call this module, so a user's variant offline equals the one that served them.

bucket(user, salt) = the first 8 bytes of sha256(f"{salt}:{user_id}") as an unsigned integer / 2**64,
uniform in [0, 1). A user is in the treatment iff bucket < share. The bucket never changes while
the salt stays, so a user is sticky, and raising the share (a canary) only moves users from
control to treatment, never back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

CONTROL = "control"
TREATMENT = "treatment"
VARIANTS = (CONTROL, TREATMENT)
_SCALE = float(2**64)


def bucket(user_id: int, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{int(user_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign(user_id: int, salt: str, share: float) -> str:
    """"treatment" for a ``share`` of users (0..1), "control" for the rest."""
    return TREATMENT if bucket(user_id, salt) < share else CONTROL


def assign_many(user_ids: Iterable[int], salt: str, share: float) -> np.ndarray:
    """The variant of each user (object array of "control"/"treatment"), the same as :func:`assign`."""
    return np.array([assign(u, salt, share) for u in user_ids], dtype=object)
