"""kaito-core: the thin core of a plugin-based KAITO. It knows no model, cloud or engine by name."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # ``__version__`` is read from the installed metadata on first use only: importing
    # importlib.metadata and reading METADATA costs every `kaito` command start-up time.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("kaito-core")
        except PackageNotFoundError:  # running from a source tree without installing
            found = "0.0.0+source"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
