"""RecommendClient honours its timeout on both protocols. The server is a real TCP listener that
accepts connections and never answers (what a stuck server looks like to a client); the call runs
in a thread so a client that ignores its timeout fails the test instead of hanging it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from cascade.client import RecommendClient
from cascade.errors import UnavailableError

CLIENT_TIMEOUT_S = 0.5
HANG_LIMIT_S = 8.0  # far above the client's timeout, far below tritonclient's 60 s default


@pytest.fixture
def silent_server() -> Iterator[str]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # read nothing, answer nothing
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_recommend_times_out_with_unavailable_error(silent_server: str, protocol: str) -> None:
    outcome: list[BaseException | object] = []

    def call() -> None:
        try:
            with RecommendClient(silent_server, protocol=protocol, timeout_s=CLIENT_TIMEOUT_S) as client:
                outcome.append(client.recommend(1, k=5))
        except BaseException as error:  # noqa: BLE001 - inspected below
            outcome.append(error)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(HANG_LIMIT_S)
    assert not worker.is_alive(), f"{protocol} client ignored timeout_s={CLIENT_TIMEOUT_S} (still waiting)"
    assert len(outcome) == 1 and isinstance(outcome[0], UnavailableError), outcome
    assert "timed out" in str(outcome[0]) or "deadline" in str(outcome[0]).lower()
