"""Error hierarchy (after Feast's ``errors.py``): every error knows its gRPC and HTTP status.

Offline code raises these with a message that names the field/column/file and the expected form;
the CLI prints the message and exits non-zero. Triton models turn them into exactly one
``pb_utils.TritonError(message, code)`` response via :func:`triton_code_name`.
"""

from __future__ import annotations

from http import HTTPStatus


class CascadeError(Exception):
    """Base class. ``grpc_code`` is a Triton/gRPC status name, ``http_status`` an HTTP code."""

    grpc_code: str = "INTERNAL"
    http_status: int = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(CascadeError):
    """A request, file or argument is malformed: the message names the field and expected form."""

    grpc_code = "INVALID_ARG"
    http_status = HTTPStatus.BAD_REQUEST


class DataValidationError(InvalidInputError):
    """An input data file has a problem: file, row and column are named in the message."""


class SchemaError(InvalidInputError):
    """A column is missing or has the wrong dtype for a schema or workflow."""


class NotFoundError(CascadeError):
    """An artifact, model repository, dataset or entity does not exist."""

    grpc_code = "NOT_FOUND"
    http_status = HTTPStatus.NOT_FOUND


class UnavailableError(CascadeError):
    """A dependency (feature store, index, server) cannot answer right now."""

    grpc_code = "UNAVAILABLE"
    http_status = HTTPStatus.SERVICE_UNAVAILABLE


class ServerStartError(UnavailableError):
    """tritonserver did not become ready; the message carries the tail of its log."""


class BundleVerificationError(InvalidInputError):
    """A bundle (export) fails verification: manifest, sha256 of a file, signature or code version."""


class BundleMismatchError(CascadeError):
    """A stage received tensors produced by another bundle's stage (a mixed answer, refused)."""


class RolloutError(CascadeError):
    """A rollout or rollback could not complete; live traffic stays on the bundle named in the message."""

    grpc_code = "UNAVAILABLE"
    http_status = HTTPStatus.SERVICE_UNAVAILABLE


def triton_code_name(error: BaseException) -> str:
    """The ``pb_utils.TritonError`` code attribute name for ``error`` (INTERNAL for unknown errors)."""
    if isinstance(error, CascadeError):
        return error.grpc_code
    return "INTERNAL"
