"""The conversion webhook: ConversionReview v1 answered with the lossless conversion of kaito_core.api.

It is served by the admission webhook's server (same port, same certificate) under
``<webhook path>/convert``. With ``--manage-webhook-configuration`` the operator switches the CRD to
``conversion.strategy: Webhook`` pointing at it, with the server's CA bundle, as kopf writes the
ValidatingWebhookConfiguration.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kaito_core.api import convert
from kaito_core.api.crd import CRD_NAME

CONVERT_ID = "convert"
CONVERSION_REVIEW_VERSION = "apiextensions.k8s.io/v1"


def conversion_review(review: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to a ConversionReview: every object converted to ``desiredAPIVersion``, or a Failure
    naming the object that could not be converted (the API server then fails the request with it)."""
    request = review.get("request") or {}
    uid = request.get("uid", "")
    desired = str(request.get("desiredAPIVersion", ""))
    converted = []
    for obj in request.get("objects") or []:
        name = (obj.get("metadata") or {}).get("name", "") if isinstance(obj, dict) else ""
        try:
            if not isinstance(obj, dict):
                raise ValueError("every object must be a JSON object")
            converted.append(convert(obj, desired))
        except ValueError as exc:
            failure = {"status": "Failure", "message": f"cannot convert Workspace {name}: {exc}"}
            return _answer(uid, [], failure)
    return _answer(uid, converted, {"status": "Success"})


def _answer(uid: str, objects: list[dict[str, Any]], result: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": CONVERSION_REVIEW_VERSION,
        "kind": "ConversionReview",
        "response": {"uid": uid, "convertedObjects": objects, "result": result},
    }


WebhookFn = Callable[..., Awaitable[Any]]


def with_conversion(fn: WebhookFn) -> WebhookFn:
    """kopf's admission entry point, also answering ConversionReviews (posted to ``.../convert``)."""

    async def serve(data: Any, *, webhook: str | None = None, **kwargs: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "ConversionReview":
            return conversion_review(data)
        return await fn(data, webhook=webhook, **kwargs)

    return serve


def conversion_stanza(client_config: Mapping[str, Any]) -> dict[str, Any]:
    """The CRD's ``spec.conversion`` for the server's client config (kopf's: url or service, caBundle)."""
    client: dict[str, Any] = {}
    if "service" in client_config:
        service = dict(client_config["service"])
        service["path"] = f"{service.get('path', '').rstrip('/')}/{CONVERT_ID}"
        client["service"] = service
    elif "url" in client_config:
        client["url"] = f"{str(client_config['url']).rstrip('/')}/{CONVERT_ID}"
    if client_config.get("caBundle"):
        client["caBundle"] = client_config["caBundle"]
    return {"strategy": "Webhook",
            "webhook": {"conversionReviewVersions": ["v1"], "clientConfig": client}}


def crd_patch(client_config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(CRD name, merge patch) switching the Workspace CRD to this conversion webhook."""
    return CRD_NAME, {"spec": {"conversion": copy.deepcopy(conversion_stanza(client_config))}}
