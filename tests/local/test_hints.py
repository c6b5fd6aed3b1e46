"""Hints: what the last run of a Workspace file served, keyed by the file's content."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaito_core.local import hints


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAITO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _hint(model: Path) -> hints.Hint:
    return hints.Hint(distribution="kaito-runtime-llamacpp", runtime="llamacpp", model=str(model),
                      n_gpu_layers=0)


def test_a_hint_is_found_for_the_same_content_only(home: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws.yaml"
    workspace.write_text("kind: Workspace\n")
    (home / "store").mkdir(parents=True)
    model = home / "store" / "model.gguf"
    model.write_bytes(b"GGUF")
    assert hints.read(workspace) is None  # no run yet
    hints.remember(workspace, _hint(model))
    assert hints.read(workspace) == _hint(model)
    assert len(list((home / "hints").glob("*.json"))) == 1

    moved = tmp_path / "elsewhere.yaml"  # the key is the content, not the path
    moved.write_bytes(workspace.read_bytes())
    assert hints.read(moved) == _hint(model)

    workspace.write_text("kind: Workspace\nmetadata: {}\n")  # edited: the old hint no longer applies
    assert hints.read(workspace) is None


def test_a_hint_whose_weights_are_gone_or_that_is_damaged_is_ignored(home: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws.yaml"
    workspace.write_text("kind: Workspace\n")
    (home / "store").mkdir(parents=True)
    model = home / "store" / "model.gguf"
    model.write_bytes(b"GGUF")
    hints.remember(workspace, _hint(model))
    model.unlink()
    assert hints.read(workspace) is None

    outside = tmp_path / "elsewhere.gguf"  # weights come from $KAITO_HOME only
    outside.write_bytes(b"GGUF")
    hints.remember(workspace, _hint(outside))
    assert hints.read(workspace) is None
    (home / "store" / "link.gguf").symlink_to(outside)  # not through a link either
    hints.remember(workspace, _hint(home / "store" / "link.gguf"))
    assert hints.read(workspace) is None

    model.write_bytes(b"GGUF")
    (stored,) = (home / "hints").glob("*.json")
    for damaged in ("{not json", "[]", '{"distribution": "d", "runtime": "r", "model": "m"}',
                    f'{{"distribution": "d", "runtime": "r", "model": "{model}", "n_gpu_layers": true}}'):
        stored.write_text(damaged)
        assert hints.read(workspace) is None, damaged


def test_remembering_never_fails_a_run(home: Path, tmp_path: Path) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("a file where the directory should be")
    workspace = tmp_path / "ws.yaml"
    workspace.write_text("kind: Workspace\n")
    hints.remember(workspace, _hint(tmp_path / "model.gguf"))  # no exception
    hints.remember(tmp_path / "missing.yaml", _hint(tmp_path / "model.gguf"))
    assert hints.read(workspace) is None
