"""Service errors the API maps to 4xx (a 500 is a bug)."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class FieldError(ServiceError):
    """Bad input not caught by the request model; `loc` names the field (422)."""

    status_code = 422

    def __init__(self, loc: list[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = loc
