"""The one error type of the CDS Hooks service: an HTTP status, a short code and a message (never a traceback)."""

from __future__ import annotations

from typing import Any

__all__ = ["ServiceError"]


class ServiceError(Exception):
    """A request the service cannot answer, as an HTTP status with a JSON body ``{"error", "message", "details"}``.

    ``error`` is a short code (``bad-request``, ``not-found``, ``unauthorized``, ``prefetch-unavailable`` ...);
    ``details`` lists structured problems (element paths) when there are several.
    """

    def __init__(self, status: int, error: str, message: str, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        out: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out
