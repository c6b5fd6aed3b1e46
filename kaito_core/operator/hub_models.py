"""The operator's part of KAITO's generic path: a Workspace whose preset is a Hugging Face repository id.

Before planning, the repository is read from the Hub at the commit the ``kaito.sh/model-revision``
annotation names (when absent, ``main`` is resolved once and the commit written to that annotation, and
to ``status.modelRevision``, so every later pass and every node plans and pulls the same files). A gated
model's token is the ``HF_TOKEN`` key of the Secret ``inference.preset.presetOptions.modelAccessSecret``
names (read with ``get`` on that one Secret, the operator's only access to Secrets); it is passed to the
Hub client and never logged or written anywhere. What cannot be served becomes the status message.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kaito_core.api import Workspace
from kaito_core.api.names import MODEL_REVISION_ANNOTATION
from kaito_core.artifacts.hub import HubClient, HubError
from kaito_core.artifacts.hub_presets import HubPresets, hub_preset_name, resolve_hub_preset
from kaito_core.operator.kube import Kube
from kaito_core.operator.status import Check
from kaito_core.planning.hub_preset import HubModelError
from kaito_core.plugins import Preset, Registry

Io = Callable[..., Awaitable[Any]]
TOKEN_KEY = "HF_TOKEN"  # noqa: S105 - the name of the Secret key, not a secret
FIELD = "inference.preset.presetOptions.modelAccessSecret"
#: HubError kind -> (status reason, whether it is final until the Workspace changes)
_REASONS = {
    "repo-not-found": ("ModelNotFound", True),
    "revision-not-found": ("ModelRevisionNotFound", True),
    "entry-not-found": ("ModelConfigNotFound", True),
    "gated": ("ModelAccessDenied", True),
    "no-access": ("ModelAccessDenied", True),
    "unauthorized": ("ModelAccessDenied", True),
    "invalid": ("ModelNotFound", True),
    "corrupt": ("ModelConfigInvalid", True),
}


@dataclass
class HubModel:
    """What the step found: the preset (registered for planning), or the check that stops the pass."""

    preset: Preset | None = None
    problem: Check | None = None
    revision: str | None = None  # the pinned commit


class HubModelStep:
    def __init__(self, kube: Kube, registry: Registry, io: Io) -> None:
        self.kube = kube
        self.registry = registry
        self.io = io
        self._resolved: dict[tuple[str, str, str], Preset] = {}  # (repo, commit, token digest) -> preset

    def applies(self, ws: Workspace) -> bool:
        return ws.inference is not None and hub_preset_name(ws.preset_name, self.registry)

    async def resolve(self, ws: Workspace) -> HubModel:
        repo = ws.preset_name or ""
        token, problem = await self._token(ws)
        if problem is not None:
            return HubModel(problem=problem)
        pinned = (ws.metadata.annotations or {}).get(MODEL_REVISION_ANNOTATION)
        key = (repo, pinned or "", hashlib.sha256((token or "").encode()).hexdigest())
        preset = self._resolved.get(key) if pinned else None
        if preset is None:
            client = HubClient(token=token)
            try:
                read = functools.partial(resolve_hub_preset, revision=pinned, client=client)
                preset = await self.io(read, repo, self.registry.runtimes())
            except HubError as exc:
                reason, final = _REASONS.get(exc.kind, ("ModelHubUnavailable", False))
                return HubModel(problem=Check("False", reason, str(exc), failed=final))
            except HubModelError as exc:
                return HubModel(problem=Check("False", "ModelUnsupported", str(exc), failed=True))
            self._resolved[(repo, preset.source.revision, key[2])] = preset
        if not pinned:
            await self.io(self.kube.patch_workspace_annotations, ws.namespace, ws.name,
                          {MODEL_REVISION_ANNOTATION: preset.source.revision})
        return HubModel(preset=preset, revision=preset.source.revision)

    def use(self, preset: Preset) -> None:
        """Make ``preset`` the one its name plans with (call right before planning, without awaiting
        in between: two Workspaces may pin the same repository at different commits)."""
        HubPresets.of(self.registry).add(preset)

    async def _token(self, ws: Workspace) -> tuple[str | None, Check | None]:
        options = ws.inference.preset.preset_options if ws.inference and ws.inference.preset else None
        secret_name = options.model_access_secret if options is not None else None
        if not secret_name:
            return None, None
        secret = await self.io(self.kube.read_secret, ws.namespace, secret_name)
        if secret is None:
            return None, Check("False", "ModelAccessSecretNotFound",
                               f"{FIELD}: Secret {secret_name!r} not found in namespace "
                               f"{ws.namespace!r}; create it with an {TOKEN_KEY} key",
                               failed=True)
        encoded = (secret.get("data") or {}).get(TOKEN_KEY)
        if not encoded:
            return None, Check("False", "ModelAccessSecretInvalid",
                               f"{FIELD}: Secret {secret_name!r} has no {TOKEN_KEY} key", failed=True)
        try:
            return base64.b64decode(encoded).decode().strip(), None
        except (ValueError, UnicodeDecodeError):
            return None, Check("False", "ModelAccessSecretInvalid",
                               f"{FIELD}: the {TOKEN_KEY} value of Secret {secret_name!r} is not base64 "
                               "text", failed=True)
