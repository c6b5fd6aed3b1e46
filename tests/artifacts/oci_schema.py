"""The subset of the OCI image spec's JSON schemas (image-layout, image-index, image-manifest,
content-descriptor; github.com/opencontainers/image-spec/schema, v1.1) that an image layout must meet."""

from __future__ import annotations

from typing import Any

MEDIA_TYPE = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$",
}
DIGEST = {"type": "string", "pattern": r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"}
ANNOTATIONS = {"type": "object", "additionalProperties": {"type": "string"}}

DESCRIPTOR: dict[str, Any] = {
    "type": "object",
    "required": ["mediaType", "digest", "size"],
    "properties": {
        "mediaType": MEDIA_TYPE,
        "digest": DIGEST,
        "size": {"type": "integer", "minimum": -9223372036854775808, "maximum": 9223372036854775807},
        "urls": {"type": "array", "items": {"type": "string", "format": "uri"}},
        "annotations": ANNOTATIONS,
        "artifactType": MEDIA_TYPE,
        "data": {"type": "string", "contentEncoding": "base64"},
    },
}

IMAGE_LAYOUT: dict[str, Any] = {
    "type": "object",
    "required": ["imageLayoutVersion"],
    "properties": {"imageLayoutVersion": {"type": "string", "enum": ["1.0.0"]}},
}

IMAGE_INDEX: dict[str, Any] = {
    "type": "object",
    "required": ["schemaVersion", "manifests"],
    "properties": {
        "schemaVersion": {"type": "integer", "minimum": 2, "maximum": 2},
        "mediaType": {"const": "application/vnd.oci.image.index.v1+json"},
        "artifactType": MEDIA_TYPE,
        "manifests": {"type": "array", "items": DESCRIPTOR},
        "annotations": ANNOTATIONS,
    },
}

IMAGE_MANIFEST: dict[str, Any] = {
    "type": "object",
    "required": ["schemaVersion", "config", "layers"],
    "properties": {
        "schemaVersion": {"type": "integer", "minimum": 2, "maximum": 2},
        "mediaType": {"const": "application/vnd.oci.image.manifest.v1+json"},
        "artifactType": MEDIA_TYPE,
        "config": DESCRIPTOR,
        "layers": {"type": "array", "items": DESCRIPTOR, "minItems": 1},
        "subject": DESCRIPTOR,
        "annotations": ANNOTATIONS,
    },
}
