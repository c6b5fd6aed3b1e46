"""Reading Workspace manifests (YAML or dicts, either version) into :class:`Workspace` objects.

Every problem comes back as a :class:`FieldError` with the path of the field in the manifest as the
user wrote it, never as a traceback: YAML syntax, unknown apiVersion, missing ``metadata.name``, wrong
types and unknown fields.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kaito_core.api.errors import FieldError, WorkspaceError, join_path
from kaito_core.api.models import Workspace
from kaito_core.api.names import API_VERSIONS, KIND, V1ALPHA1


@dataclass
class Document:
    """One YAML document that is (or claims to be) a Workspace."""

    index: int  # position among the objects of the file (items of a List counted), from 0
    kind: str
    name: str
    manifest: dict[str, Any] | None
    workspace: Workspace | None = None
    errors: list[FieldError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.workspace is not None and not self.errors


def parse_workspace(manifest: Any) -> tuple[Workspace | None, list[FieldError]]:
    """Check a manifest dict against the model of its apiVersion and return the v1beta1 Workspace."""
    if not isinstance(manifest, dict):
        return None, [FieldError("", f"a Workspace must be a mapping, got {type(manifest).__name__}")]
    api_version = manifest.get("apiVersion")
    if api_version not in API_VERSIONS:
        told = "missing" if api_version is None else f"unknown apiVersion {api_version!r}"
        return None, [FieldError("apiVersion", f"{told}; use one of: {', '.join(API_VERSIONS)}")]
    errors: list[FieldError] = []
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        errors.append(FieldError("metadata.name", "required: every Workspace needs a name"))
    model: type[BaseModel] = Workspace
    if api_version == V1ALPHA1:
        # imported for v1alpha1 files only: building its models costs every other load start-up time
        from kaito_core.api.v1alpha1 import WorkspaceV1Alpha1

        model = WorkspaceV1Alpha1
    try:
        parsed = model.model_validate(manifest)
    except ValidationError as exc:
        return None, errors + _field_errors(exc, model)
    if errors:
        return None, errors
    if isinstance(parsed, Workspace):
        return parsed, []
    from kaito_core.api.v1alpha1 import WorkspaceV1Alpha1

    assert isinstance(parsed, WorkspaceV1Alpha1)
    # the API server applies v1alpha1 defaults before converting to the stored version
    return Workspace.model_validate(parsed.to_manifest()), []


def parse_documents(text: str) -> list[Document]:
    """Every document of a multi-document YAML text that is a Workspace, each with its errors.

    Documents of other kinds (a ConfigMap next to the Workspace) are skipped; empty documents too.
    """
    try:
        raw = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        return [Document(0, KIND, "?", None, errors=[FieldError("", _yaml_problem(exc))])]
    documents = []
    for index, manifest in enumerate(_expand_lists(raw)):
        if isinstance(manifest, dict):
            kind = manifest.get("kind")
            api_version = str(manifest.get("apiVersion", ""))
            if kind != KIND and (kind is not None or not api_version.startswith("kaito.sh/")):
                continue  # another kind of object (a ConfigMap, another kaito.sh resource)
            metadata = manifest.get("metadata")
            name = str(metadata.get("name") or "?") if isinstance(metadata, dict) else "?"
            document = Document(index, KIND, name, manifest)
            if kind is None:
                document.errors.append(FieldError("kind", f"required: {KIND}"))
                documents.append(document)
                continue
        else:
            document = Document(index, KIND, "?", None)
        document.workspace, errors = parse_workspace(manifest)
        document.errors.extend(errors)
        documents.append(document)
    return documents


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line, with the position in the file (the caller names the file)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"invalid YAML: {exc}"
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = "; ".join(part for part in (exc.context, exc.problem) if part)
    return f"invalid YAML{where}: {what}"


def _expand_lists(raw: list[Any]) -> list[Any]:
    """Documents, with the items of ``kind: List``/``WorkspaceList`` (``kubectl get -o yaml``) inlined."""
    out: list[Any] = []
    for document in raw:
        if document is None:
            continue
        if (isinstance(document, dict) and document.get("kind") in ("List", f"{KIND}List")
                and isinstance(document.get("items"), list)):
            out.extend(item for item in document["items"] if item is not None)
        else:
            out.append(document)
    return out


def load_workspaces(text: str, source: str = "") -> list[Workspace]:
    """Every Workspace in a multi-document YAML text, as v1beta1 models.

    Raises :class:`WorkspaceError` listing every problem of every document (``source`` names the
    file in its message).
    """
    documents = parse_documents(text)
    errors = [e for d in documents for e in d.errors]
    if errors:
        objects = [f"{d.kind}/{d.name}" for d in documents for _ in d.errors]
        raise WorkspaceError(errors, source, objects)
    return [d.workspace for d in documents if d.workspace is not None]


def load_workspace(text: str, source: str = "") -> Workspace:
    """The single Workspace in ``text`` (an error when there is none or more than one)."""
    workspaces = load_workspaces(text, source)
    if len(workspaces) != 1:
        raise WorkspaceError([FieldError("", f"expected one Workspace, found {len(workspaces)}")], source)
    return workspaces[0]


# ------------------------------------------------------------------------------ pydantic -> FieldError


def _field_errors(exc: ValidationError, model: type[BaseModel]) -> list[FieldError]:
    out: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for error in exc.errors(include_url=False):
        loc = [p for p in error["loc"] if not (isinstance(p, str) and _is_union_tag(p))]
        path = join_path(*loc)
        message = _message(error, loc, model)
        if (path, message) not in seen:
            seen.add((path, message))
            out.append(FieldError(path, message))
    return out


def _is_union_tag(part: str) -> bool:
    # pydantic names union members in locations, e.g. "function-after[...]" or "literal['x']"
    return "[" in part or part in {"str", "int", "float", "bool", "list", "dict", "none"}


def _message(error: Any, loc: list[str | int], model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        known = _known_fields(model, loc[:-1])
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (
            f"; known fields here: {', '.join(known)}" if known else "")
        return f"unknown field {name!r}{hint}"
    if kind == "missing":
        return "required"
    if loc and loc[-1] == "strength" and kind == "string_type":
        return f'strength must be a quoted string, e.g. "0.5" (got {error.get("input")!r})'
    message = str(error["msg"])
    if "input" in error and kind not in {"model_type", "dict_type"}:
        message += f" (got {error['input']!r})"
    return message


def _known_fields(model: type[BaseModel], loc: list[str | int]) -> list[str]:
    """The camelCase field names of the model at ``loc`` (for "did you mean" hints)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields:
            return []
        target = next((f for n, f in fields.items() if (f.alias or n) == part or n == part), None)
        if target is None:
            return []
        current = _model_in(target.annotation)
    fields = getattr(current, "model_fields", None)
    return sorted((f.alias or n) for n, f in fields.items()) if fields else []


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
