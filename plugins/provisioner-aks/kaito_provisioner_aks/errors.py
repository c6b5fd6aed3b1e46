"""Azure SDK exceptions -> (message verbatim, short CamelCase reason) for the Workspace status.

azure.core is imported only inside ``describe``: every ``kaito`` command registers this plugin, and
importing the Azure SDK costs tens of milliseconds that only a call to Azure needs.
"""

from __future__ import annotations

import re

_BY_STATUS = {
    401: "AuthenticationFailed",
    403: "AuthorizationFailed",
    404: "NotFound",
    409: "Conflict",
    429: "TooManyRequests",
}


class AKSError(RuntimeError):
    """An Azure call failed; ``str()`` is Azure's own message, ``reason`` its code in CamelCase."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def camel_reason(code: str) -> str:
    """``QuotaExceeded`` stays; ``ErrCode_InsufficientVCPUQuota`` -> ``ErrCodeInsufficientVCPUQuota``."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", code) if p]
    return "".join(p[0].upper() + p[1:] for p in parts)


def describe(err: BaseException) -> tuple[str, str]:
    """Azure's message for ``err`` (verbatim, as ARM sent it) and a reason for the status condition."""
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(err, HttpResponseError):
        detail = err.error  # ARM's {"error": {"code", "message"}}, parsed by the SDK
        code = getattr(detail, "code", None) or ""
        message = getattr(detail, "message", None) or ""
        status = err.status_code or 0
        if not message:
            message = err.reason or err.message or type(err).__name__
        if code:
            return message, camel_reason(code)
        if isinstance(err, ClientAuthenticationError) and not status:
            return message, "AuthenticationFailed"  # the credential chain, before any ARM call
        if status >= 500:
            return message, "AzureServerError"
        return message, _BY_STATUS.get(status, "AzureError")
    if isinstance(err, ServiceRequestError | ServiceResponseError):
        return str(err), "AzureUnreachable"
    if isinstance(err, AzureError):
        return str(err), "AzureError"
    return f"{type(err).__name__}: {err}", "ProvisionerError"
