"""The Docker/distribution token flow: a registry's ``Bearer realm=...`` challenge answered by asking
its token service (GET with Basic credentials, or POST a refresh token for an identity token)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import requests

from kaito_core.artifacts.auth import CONFIG_HINT, Credentials
from kaito_core.artifacts.errors import ArtifactError, connection_problem
from kaito_core.artifacts.reference import is_loopback


def fetch_token(
    session: requests.Session,
    params: dict[str, str],
    credentials: Credentials | None,
    scope: str,
    allow_plain_http: bool,
    timeout: tuple[float, float],
    *,
    registry: str,
    target: str,
    action: str,
) -> str:
    """A token for ``scope`` from the realm in ``params`` (the parsed challenge). ``registry`` (a host),
    ``target`` (the reference) and ``action`` ("pulling", "pushing") are for messages."""
    where = f"registry {registry}"
    realm = params["realm"]
    realm_host = urlparse(realm).netloc
    if urlparse(realm).scheme != "https" and not (allow_plain_http or is_loopback(realm_host)):
        raise ArtifactError(
            f"{where} sends its token realm over plain HTTP ({realm_host}); "
            "refusing to send credentials unencrypted (pass --plain-http to allow)"
        )
    scopes = [s for s in {params.get("scope", ""), scope} if s]
    creds = credentials
    try:
        if creds is not None and creds.identity_token:
            resp = session.post(
                realm,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "service": params.get("service", ""),
                    "scope": " ".join(scopes),
                    "client_id": "kaito",
                },
                timeout=timeout,
            )
        else:
            query: dict[str, Any] = {"scope": scopes}
            if params.get("service"):
                query["service"] = params["service"]
            auth = (creds.username, creds.password) if creds is not None and creds.username else None
            resp = session.get(realm, params=query, auth=auth, timeout=timeout)
    except requests.exceptions.RequestException as exc:
        raise ArtifactError(
            f"cannot reach the token service {realm_host} of {where} "
            f"({connection_problem(exc)}) while {action} {target}; check the network"
        ) from None
    if resp.status_code in (401, 403):
        if creds is None:
            raise ArtifactError(
                f"{where} requires authentication for {target} (token service "
                f"answered {resp.status_code}); give credentials with {CONFIG_HINT}"
            )
        raise ArtifactError(
            f"the token service of {where} rejected the credentials for {target} "
            f"({resp.status_code}); check the username and password in {CONFIG_HINT}"
        )
    if resp.status_code != 200:
        raise ArtifactError(
            f"the token service {realm_host} of {where} answered "
            f"{resp.status_code} while {action} {target}; try again later"
        )
    try:
        payload = resp.json()
        token = payload.get("token") or payload.get("access_token")
    except ValueError:
        token = None
    if not token or not isinstance(token, str):
        raise ArtifactError(f"the token service {realm_host} of {where} returned no token")
    return token
