"""`kaito run` serves a Workspace with an adapter on the transformers runtime: the adapter pulled from
its artifact into the run's directory, applied at the Workspace's strength (0: the base model's answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from kaito_runtime_transformers import plugin
from kaito_runtime_transformers.train import tune

from kaito_core.artifacts import push
from kaito_core.local import procs, state
from kaito_core.local.runner import RunOptions, run
from kaito_core.planning.hardware import Hardware
from kaito_core.plugins import GiB, Registry

from .conftest import FAST_CONFIG
from .test_run_tuning import Presets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def workspace_file(
    path: Path, model_ref: str, adapter_ref: str | None, strength: str, volume: str = ""
) -> Path:
    source = f'image: "{adapter_ref}"' if adapter_ref else f"volumeSource: {{hostPath: {{path: {volume}}}}}"
    adapters = (
        f"""
  adapters:
    - source:
        name: tuned
        {source}
      strength: "{strength}"
"""
        if adapter_ref or volume
        else ""
    )
    path.write_text(f"""apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: {path.stem}
  annotations:
    kaito.sh/model-artifact: "{model_ref}"
resource:
  labelSelector:
    matchLabels: {{app: tiny}}
inference:
  preset:
    name: tiny-llama{adapters}""")
    return path


def kaito_adapter_image(adapter: Path, ref: str) -> None:
    """The adapter as KAITO's tuning pusher writes it (pusher.sh): one tar+gzip layer holding
    data/adapter_config.json and data/adapter_model.safetensors, an image config listing its diff id."""
    import gzip
    import io
    import tarfile

    from kaito_core.artifacts import mediatypes
    from kaito_core.artifacts.layout import OciLayout
    from kaito_core.artifacts.manifest import canonical_json, digest_bytes

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            tar.add(adapter / name, arcname=f"data/{name}")
    layer = gzip.compress(buffer.getvalue(), compresslevel=9)
    config = canonical_json({"rootfs": {"diff_ids": [digest_bytes(buffer.getvalue())]}})
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_IMAGE_CONFIG, "digest": digest_bytes(config),
                   "size": len(config)},
        "layers": [{"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": digest_bytes(layer), "size": len(layer),
                    "annotations": {mediatypes.TITLE: "layer.tar.gz"}}],
        "annotations": {"sh.kaito.model.name": "tiny-llama"},
    })  # fmt: skip
    _, root, tag = ref.split(":")
    layout = OciLayout(Path(root))
    layout.create()
    for blob in (layer, config):
        layout.put_bytes(blob)
    digest = layout.put_bytes(manifest)
    layout.tag(tag, {"mediaType": mediatypes.OCI_MANIFEST, "digest": digest, "size": len(manifest)})


def answer(file: Path, registry: Registry, model: str = "tiny-llama") -> str:
    port = free_port()
    code = run(
        RunOptions(file=file, port=port, detach=True, progress=False, ready_timeout=300),
        registry=registry,
        hardware=Hardware.cpu_only(2, 8 * GiB, "this CPU"),
    )
    assert code == 0
    record = state.load(file.stem)
    assert record is not None
    try:
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            timeout=120,
            json={
                "model": model,
                "max_tokens": 10,
                "temperature": 0,
                "messages": [{"role": "user", "content": "what colour is the sky"}],
            },
        )
        assert reply.status_code == 200, reply.text
        text: str = reply.json()["choices"][0]["message"]["content"]
        return text
    finally:
        assert record.pid is not None
        procs.terminate(record.pid, record.pid_start)
        state.remove(record.name)


def test_kaito_run_serves_an_adapter_at_its_strength(
    tiny_model: Path, chat_parquet: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    from kaito_runtime_transformers import config

    monkeypatch.setenv("KAITO_HOME", str(tmp_path / "home"))
    registry = Registry()
    registry.register(Presets(), distribution="tiny-presets", version="0")
    registry.register(plugin, distribution="kaito-runtime-transformers", version="0.1.0")
    model_ref = f"oci:{tmp_path / 'models'}:tiny"
    push(tiny_model, model_ref, progress=False)
    tune(tiny_model, [chat_parquet], config.parse(FAST_CONFIG, "lora"), tmp_path / "adapter", progress=False)
    adapter_ref = f"oci:{tmp_path / 'adapters'}:tuned"
    push(tmp_path / "adapter", adapter_ref, progress=False)

    base = answer(workspace_file(tmp_path / "ws-base.yaml", model_ref, None, "1"), registry)
    # `model` names the adapter (the base model's name would ask for the base alone, as in vLLM)
    off = answer(workspace_file(tmp_path / "ws-zero.yaml", model_ref, adapter_ref, "0.0"), registry, "tuned")
    on = answer(workspace_file(tmp_path / "ws-full.yaml", model_ref, adapter_ref, "1.0"), registry, "tuned")
    assert off == base
    assert on != base

    # The same adapter as KAITO's tuning job pushes it (a container image, the files under /data/), and
    # as a hostPath volume (KAITO's volume adapters): the same answer.
    kaito_ref = f"oci:{tmp_path / 'kaito-adapters'}:tuned"
    kaito_adapter_image(tmp_path / "adapter", kaito_ref)
    kaito_ws = workspace_file(tmp_path / "ws-kaito.yaml", model_ref, kaito_ref, "1.0")
    assert answer(kaito_ws, registry, "tuned") == on
    volume = workspace_file(
        tmp_path / "ws-volume.yaml", model_ref, None, "1.0", volume=str(tmp_path / "adapter")
    )
    assert answer(volume, registry, "tuned") == on
