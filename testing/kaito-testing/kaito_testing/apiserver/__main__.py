"""``python -m kaito_testing.apiserver [--port N] [--crd FILE ...]``: serve the emulator."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from kaito_testing.apiserver.server import ApiServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--crd", action="append", default=[], help="a YAML file of objects to load first")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for this server here")
    args = parser.parse_args()
    server = ApiServer(port=args.port).start()
    for path in args.crd:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if doc:
                server.apply(doc)
    if args.kubeconfig:
        server.kubeconfig("admin", args.kubeconfig)
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
