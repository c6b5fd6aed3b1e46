"""What `kaito` imports before it does anything: start-up cost is paid in imports, so the import graph
is pinned here (the seconds themselves are measured by benchmarks/bench_startup.py, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from click.testing import CliRunner

from kaito_core.cli.main import cli


def _imported_after(code: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules under ``prefixes`` that a fresh interpreter has imported after running ``code``."""
    probe = (
        f"{code}\n"
        "import json, sys\n"
        f"prefixes = {prefixes!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "                        if any(m == p or m.startswith(p + '.') for p in prefixes))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


def test_the_cli_module_imports_no_heavy_dependency() -> None:
    heavy = ("pydantic", "yaml", "starlette", "uvicorn", "azure", "importlib.metadata", "kaito_core.api")
    assert _imported_after("import kaito_core.cli.main", heavy) == []


def test_a_v1beta1_file_does_not_build_the_v1alpha1_models() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "workspace-gemma-3-270m.yaml"
    code = (
        "from pathlib import Path\n"
        "from kaito_core.api import load_workspaces\n"
        f"[workspace] = load_workspaces(Path({str(example)!r}).read_text())\n"
        "assert workspace.api_version == 'kaito.sh/v1beta1', workspace.api_version\n"
    )
    assert _imported_after(code, ("kaito_core.api.v1alpha1",)) == []


def test_version_is_read_only_when_asked() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"kaito, version {version('kaito-core')}\n"


def test_the_prestarted_server_imports_the_engine_library_but_leaves_the_web_stack() -> None:
    # `kaito serve` starts loading the weights before it imports Starlette/uvicorn, so that import
    # overlaps the load; preloading it here would make the load wait for it (docs/local.md).
    code = "from kaito_core.local.prestart import preload\npreload()"
    assert _imported_after(code, ("fastapi", "uvicorn", "starlette", "kaito_core.serving.server")) == []
    loaded = _imported_after(code, ("kaito_core.cli.serve_cmd", "llama_cpp.llama_cpp"))
    assert loaded == ["kaito_core.cli.serve_cmd", "llama_cpp.llama_cpp"]
