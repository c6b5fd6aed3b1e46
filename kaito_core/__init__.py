"""kaito-core: the thin core of a plugin-based KAITO. It knows no model, cloud or engine by name."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kaito-core")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+source"
