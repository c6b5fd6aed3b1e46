"""The generated repositories for real architectures are served and read back through the client, and
their numbers are those KAITO's catalog records for the same models (model_catalog.yaml, v0.12)."""

from __future__ import annotations

import pytest
from kaito_testing.hub import FakeHub
from kaito_testing.hub_models import SHAPES

from kaito_core.artifacts.hub import HubClient, total_safetensors_bytes
from kaito_core.plugins import GiB

# KAITO v0.12 presets/workspace/models/model_catalog.yaml:
# (hiddenSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads, modelTokenLimit, modelFileSize GiB)
KAITO_CATALOG = {
    "llama": (4096, 32, 32, 8, 131072, 14.96),
    "qwen2": (3584, 28, 28, 4, 32768, 14.19),
    "mistral": (4096, 32, 32, 8, 32768, 13.50),
    "phi3": (3072, 32, 32, 32, 4096, 7.12),
    "gemma3": (2560, 34, 8, 4, 131072, 8.01),
    "gpt_oss": (2880, 24, 64, 8, 131072, None),  # KAITO states 25.63Gi, a bf16 figure for MXFP4 weights
}


@pytest.mark.parametrize("model_type", sorted(SHAPES))
def test_shape_served_and_read_back(model_type: str, hub: FakeHub, client: HubClient) -> None:
    shape = SHAPES[model_type]
    sha = shape.publish(hub)
    listing = client.listing(shape.repo)
    assert listing.sha == sha
    assert {f.path for f in listing.safetensors} == set(shape.shards)
    config = client.config(shape.repo, sha)
    text = config.get("text_config", config)
    hidden, layers, heads, kv_heads, limit, size_gib = KAITO_CATALOG[model_type]
    numbers = (text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"],
               text["num_key_value_heads"], text["max_position_embeddings"])
    assert numbers == (hidden, layers, heads, kv_heads, limit)
    index = client.safetensors_index(shape.repo, listing)
    assert set(index["weight_map"].values()) == set(shape.shards)
    if size_gib is not None:
        assert round(total_safetensors_bytes(index, listing) / GiB, 2) == size_gib
    client.download_files(listing, list(shape.shards))  # the tiny shards verify against the listing
