"""The error taxonomy of the outside contract.

Every failure a user can meet carries a stable ``error_type`` so that scripts can branch on it, a
message that says what went wrong, and a suggestion that says what to do. Messages are built by the
code that knows the facts (a port, a URL, a field); they must never contain a secret.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any


class ErrorType(StrEnum):
    CLIENT_ID_REQUIRED = "client_id_required"
    METADATA_DISCOVERY_FAILED = "metadata_discovery_failed"
    PKCE_UNSUPPORTED = "pkce_unsupported"
    DCR_FAILED = "dcr_failed"
    CALLBACK_PORT_IN_USE = "callback_port_in_use"
    CALLBACK_BIND_FAILED = "callback_bind_failed"
    STATE_MISMATCH = "state_mismatch"
    ACCESS_DENIED = "access_denied"
    LOGIN_TIMEOUT = "login_timeout"
    CODE_FLOW_FAILED = "code_flow_failed"
    REFRESH_FAILED = "refresh_failed"
    LOGIN_REQUIRED = "login_required"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    TOKEN_STORE_UNAVAILABLE = "token_store_unavailable"
    CONFIG_INVALID = "config_invalid"
    # Not authentication failures; they exist so that every failure renders the same way.
    UPSTREAM_ERROR = "upstream_error"
    USAGE_ERROR = "usage_error"


EXIT_OK = 0
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UPSTREAM = 4

_EXIT_CODES: dict[ErrorType, int] = {
    ErrorType.CONFIG_INVALID: EXIT_USAGE,
    ErrorType.USAGE_ERROR: EXIT_USAGE,
    ErrorType.UPSTREAM_ERROR: EXIT_UPSTREAM,
}


def new_correlation_id() -> str:
    """One id per login or refresh attempt, so log lines and errors of that attempt can be joined."""
    return uuid.uuid4().hex[:16]


class McpRelayError(Exception):
    """A failure with a stable type, a message for people and a suggestion of what to do next."""

    def __init__(
        self,
        error_type: ErrorType,
        message: str,
        *,
        suggestion: str = "",
        server: str | None = None,
        correlation_id: str | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.suggestion = suggestion
        self.server = server
        self.correlation_id = correlation_id
        self.request_id = request_id
        self.details = dict(details or {})

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES.get(self.error_type, EXIT_AUTH)

    def with_context(
        self, *, server: str | None = None, correlation_id: str | None = None, request_id: str | None = None
    ) -> McpRelayError:
        """Fill in context the raising code did not know, never overwriting what it did know."""
        self.server = self.server or server
        self.correlation_id = self.correlation_id or correlation_id
        self.request_id = self.request_id or request_id
        return self

    def to_dict(self) -> dict[str, Any]:
        """The contract's ``OAuthFlowError`` JSON shape."""
        return {
            "success": False,
            "error_type": str(self.error_type),
            "server_name": self.server,
            "message": self.message,
            "suggestion": self.suggestion,
            "correlation_id": self.correlation_id,
            "request_id": self.request_id,
            "details": self.details,
        }

    def __str__(self) -> str:
        return self.message


def config_error(message: str, *, suggestion: str = "", server: str | None = None, **details: Any) -> McpRelayError:
    return McpRelayError(
        ErrorType.CONFIG_INVALID, message, suggestion=suggestion, server=server, details=details
    )


def login_required(
    server: str, message: str, *, correlation_id: str | None = None, request_id: str | None = None
) -> McpRelayError:
    """The one way to say "log in again": the suggestion is the command, wherever the error is raised."""
    return McpRelayError(
        ErrorType.LOGIN_REQUIRED,
        message,
        suggestion=f"mcprelay auth login --server {server}",
        server=server,
        correlation_id=correlation_id or new_correlation_id(),
        request_id=request_id,
    )
