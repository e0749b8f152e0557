"""Locust entry point for the ``recommend`` ensemble (see loadtests/README.md).

    locust -f loadtests/locustfile.py --headless -u 20 -r 10 -t 30s --stop-timeout 5 \
        --user-ids build/data/demo --csv loadtests/reports/run --html loadtests/reports/run.html

User classes: GrpcRecommendUser (weight 3), HttpRecommendUser (weight 1); name one or more on
the command line to run only those. Shape: ``CASCADE_SHAPE=step|spike|none`` (default none).
"""

# gevent must own gRPC's I/O before any channel exists (Locust already monkey-patched the stdlib).
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from locust import events  # noqa: E402

from loadtests.shapes import shape_class  # noqa: E402
from loadtests.users import (  # noqa: E402,F401 - Locust discovers the imported user classes
    GrpcRecommendUser,
    HttpRecommendUser,
    add_arguments,
    close_open_clients,
    log_counters,
)


@events.init_command_line_parser.add_listener
def _add_cascade_arguments(parser, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    add_arguments(parser)


@events.test_stop.add_listener
def _on_test_stop(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    log_counters()


@events.quitting.add_listener
def _on_quitting(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    close_open_clients()


_selected = shape_class(os.environ.get("CASCADE_SHAPE", "none"))
if _selected is not None:

    class CascadeShape(_selected):  # type: ignore[valid-type,misc]
        """The shape picked by CASCADE_SHAPE (see loadtests/shapes.py)."""

        abstract = False
