"""Measure: the planner's GPU sizing of every catalog preset against KAITO's node estimator and against
the instance type (and node count) KAITO's own example Workspace for that model documents.

For each installed, non-deprecated GPU preset that one of KAITO v0.12's examples
(tests/data/kaito-examples) names, on that example's instance type:

- kaito: ``kaito plan``'s Plan (weights + KV cache for the planned context + runtime overhead, the GPUs
  and nodes it asks for, the context it chose);
- KAITO: its node estimator (pkg/workspace/estimator/nodesestimator, v0.12) re-computed here: model
  size = TotalSafeTensorFileSize x 1.02; per GPU: memory x 0.84 - (2.3 GiB + 2048 tokens x bytes per
  token / GPUs), over 1.05; GPUs = floor(size / that) + 1; nodes = ceil(GPUs / GPUs per node). Bytes per
  token is KAITO's: 2 x layers x KV heads x head dim x 2 (MLA: (kv_lora_rank + qk_rope_head_dim) x
  layers x 2). TotalSafeTensorFileSize is KAITO's modelFileSize (gpt-oss: its figure, which counts the
  repository's original/ copy too);
- documented: the example's instance type x resource.count.

Pure arithmetic over the installed presets, no model is loaded: it takes well under a second.
Results: a table on stdout, benchmarks/results/preset_estimates.md and .json.

    python benchmarks/preset_estimates.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from kaito_core.api import parse_documents
from kaito_core.planning import Hardware, PlanError, plan_workspace
from kaito_core.plugins import GiB, InstanceType, Preset, default_registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "data" / "kaito-examples"
RESULTS = ROOT / "benchmarks" / "results"
#: KAITO's modelFileSize where it differs from the weights a preset serves (the original/ copy counted)
KAITO_FILE_SIZE = {"gpt-oss-20b": 25.63 * GiB, "gpt-oss-120b": 121.54 * GiB}
KAITO_CONTEXT = 2048  # the estimator's maxModelLen without an inference config


def kaito_estimate(preset: Preset, sku: InstanceType) -> dict[str, Any]:
    size = KAITO_FILE_SIZE.get(preset.name, preset.requirements.total_gpu_memory) * 1.02
    arch = preset.architecture
    bytes_per_token = 2 * arch.layers * arch.kv_heads * arch.head_dim * 2
    available = sku.gpu_memory * 0.84
    reserve = 2.3 * GiB + KAITO_CONTEXT * bytes_per_token / sku.gpu_count
    if available <= reserve:
        return {"gpus": None, "nodes": None, "weights_gib": size / GiB, "error": "GPU too small"}
    per_gpu = (available - reserve) / 1.05
    gpus = int(size / per_gpu) + 1
    return {"gpus": gpus, "nodes": math.ceil(gpus / sku.gpu_count), "weights_gib": size / GiB,
            "bytes_per_token": bytes_per_token}


def examples() -> dict[str, tuple[str, Any]]:
    """Preset name -> (example file, Workspace) for the first example that names it with a real SKU."""
    found: dict[str, tuple[str, Any]] = {}
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for document in parse_documents(path.read_text()):
            ws = document.workspace
            if ws is None or ws.inference is None or ws.inference.preset is None:
                continue
            if (ws.resource.instance_type or "").startswith("<"):
                continue  # a placeholder
            found.setdefault(ws.inference.preset.name, (str(path.relative_to(EXAMPLES)), ws))
    return found


def measure() -> list[dict[str, Any]]:
    registry = default_registry()
    catalog = registry.instance_types()
    rows = []
    for name, (example, ws) in sorted(examples().items()):
        preset = registry.presets().get(name)
        if preset is None or preset.deprecated or preset.requirements.gpu_count == 0:
            continue
        sku = catalog[ws.resource.instance_type or ""]
        count = ws.resource.count or 1
        row: dict[str, Any] = {"preset": name, "example": example, "instance_type": sku.name,
                               "documented_nodes": count, "documented_gpus": count * sku.gpu_count,
                               "gpu": f"{sku.gpu_count}x {sku.gpu_model} {sku.gpu_memory / GiB:.0f}Gi"}
        row["kaito"] = kaito_estimate(preset, sku)
        try:
            plan = plan_workspace(ws, registry, Hardware.from_instance_type(sku, count))
        except PlanError as exc:
            row["ours"] = {"error": str(exc)}
        else:
            memory = plan.memory
            assert memory is not None
            row["ours"] = {
                "nodes": plan.node_count, "gpus": plan.gpu_count, "context": plan.context_length,
                "weights_gib": memory.weights / GiB, "kv_cache_gib": memory.kv_cache / GiB,
                "overhead_gib": memory.overhead / GiB, "required_gib": memory.required / GiB,
            }
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| preset | KAITO example: instance type x count "
        "| kaito: GPUs (nodes), context, weights + KV + overhead "
        "| KAITO estimator: GPUs (nodes) at 2048 tokens | documented GPUs |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ours, kaito = r["ours"], r["kaito"]
        if "error" in ours:
            mine = f"does not fit: {ours['error'][:90]}"
        else:
            mine = (f"{ours['gpus']} ({ours['nodes']}), {ours['context']}, {ours['weights_gib']:.1f} + "
                    f"{ours['kv_cache_gib']:.1f} + {ours['overhead_gib']:.1f} = {ours['required_gib']:.1f}Gi")
        theirs = "GPU too small" if kaito["gpus"] is None else f"{kaito['gpus']} ({kaito['nodes']})"
        example = f"{r['instance_type']} x {r['documented_nodes']} ({r['gpu']})"
        lines.append(f"| `{r['preset']}` | {example} | {mine} | {theirs} | {r['documented_gpus']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    rows = measure()
    text = table(rows)
    print(text, end="")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "preset_estimates.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "preset_estimates.md").write_text(
        "# Preset GPU sizing: kaito's planner vs KAITO's node estimator vs KAITO's examples\n\n"
        "`python benchmarks/preset_estimates.py` (`nox -s bench-presets`); see docs/presets.md.\n\n" + text
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
