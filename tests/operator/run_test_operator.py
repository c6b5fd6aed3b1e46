"""Run the operator as its own process with the test plugins: ``python run_test_operator.py KUBECONFIG
PROVISIONER_KUBECONFIG`` (what ``kaito operator`` does, with plugins that are not installed)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from operator_support import EmulatedProvisioner, make_registry

from kaito_core.operator.config import OperatorConfig
from kaito_core.operator.run import run_operator
from kaito_core.planning.images import ImageSettings


def main() -> None:
    kubeconfig, provisioner_kubeconfig = sys.argv[1], sys.argv[2]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    registry = make_registry(EmulatedProvisioner(provisioner_kubeconfig))
    config = OperatorConfig(
        provisioner="emulated",
        images=ImageSettings(
            overrides={"kaito": "example.com/kaito:1"}, registry_prefix="registry.example.com/models"
        ),
        kubeconfig=kubeconfig,
        requeue_seconds=0.2,
        resync_seconds=600.0,
    )
    run_operator(config, registry)


if __name__ == "__main__":
    main()
