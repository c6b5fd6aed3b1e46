"""Test doubles for what cannot run on a test machine: the Kubernetes API server (``apiserver``) and
Azure Resource Manager's agent-pools API (``arm``). Installed by the test setup (``nox -s tests``),
never a dependency of kaito-core or of a plugin."""
