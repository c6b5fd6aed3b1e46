"""Test support shipped with the core: an in-process Kubernetes API emulator (``apiserver``)."""
