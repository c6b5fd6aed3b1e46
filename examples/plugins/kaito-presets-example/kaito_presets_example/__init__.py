"""An example third-party preset package for kaito (see docs/presets.md)."""
