"""Run a Kubernetes pod spec with podman, as the kubelet would: a test double for the node, not the product.

One podman pod per Kubernetes pod (one network namespace for its containers, the declared container
ports published on loopback host ports); the init containers one after the other, each to exit 0;
then the containers, detached. What the spec declares is applied with podman's own options, so a
violation fails: ``runAsUser``/``runAsGroup``/``fsGroup``, ``capabilities.drop: [ALL]``,
``allowPrivilegeEscalation: false`` (no-new-privileges), ``readOnlyRootFilesystem``, the image's
command and args (``command`` replaces the entrypoint, ``args`` the CMD), env (values, Secret keys,
field refs), and volumes: ``emptyDir`` (a tmpfs on the host sized by ``sizeLimit``, or a directory
when none is given), ``configMap`` and ``secret`` (files, read-only), with ``subPath`` mounts.

The pod reaches the host's loopback at ``HOST_LOOPBACK`` (slirp4netns), the way a cluster's pods reach
an in-cluster registry by its own address. podman runs with runc, cgroupfs and no default ulimits
(/work/shared/reference/containers.md: crun and the default ulimits fail on these machines).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: The host's 127.0.0.1 as a pod sees it (slirp4netns allow_host_loopback).
HOST_LOOPBACK = "10.0.2.2"
_CONF = "[containers]\ndefault_ulimits = []\n"


class PodFailed(RuntimeError):
    """A container of the pod did not do what the kubelet needs (an init container failed, say)."""


def available() -> str | None:
    """None when podman can run pods here, else the reason it cannot."""
    for tool in ("podman", "slirp4netns"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman slirp4netns runc)"
    if not Path("/usr/sbin/runc").exists() and shutil.which("runc") is None:
        return "runc is not installed (apt-get install runc)"
    return None


def _runc() -> str:
    return "/usr/sbin/runc" if Path("/usr/sbin/runc").exists() else str(shutil.which("runc"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _size_bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix in sorted(units, key=len, reverse=True):
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * units[suffix])
    return int(quantity)


class PodmanPod:
    """One pod spec (``template.spec``) run with podman; use as a context manager (removes it all)."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        config_maps: Mapping[str, Mapping[str, str]] = {},
        secrets: Mapping[str, Mapping[str, str]] = {},
        fields: Mapping[str, str] = {},
        tls_verify: bool = False,
        pull: str | None = None,
        host_network: bool = False,
    ) -> None:
        """``pull`` overrides every container's imagePullPolicy with podman's ``--pull`` value (``newer``:
        a tag pushed again since it was last pulled is pulled again). ``host_network``: the pod shares
        the host's network (``hostNetwork: true``; its ports are the host's, none is published)."""
        self.spec = spec
        self.config_maps, self.secrets, self.fields = config_maps, secrets, fields
        self.tls_verify = tls_verify
        self.pull = pull
        self.host_network = host_network or bool(spec.get("hostNetwork"))
        self.name = f"kaito-pod-{uuid.uuid4().hex[:10]}"
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        (self.root / "containers.conf").write_text(_CONF)
        self.ports: dict[int, int] = {}  # containerPort -> host port on 127.0.0.1
        self.volumes: dict[str, Path] = {}
        self.tmpfs: list[Path] = []
        self.logs: dict[str, str] = {}

    # ------------------------------------------------------------------ podman

    def podman(
        self, *argv: str, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONTAINERS_CONF": str(self.root / "containers.conf")}
        cmd = ["podman", "--runtime", _runc(), "--cgroup-manager=cgroupfs", *argv]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        if check and result.returncode != 0:
            error = result.stderr.strip()[-2000:]
            raise PodFailed(f"{' '.join(cmd[:8])}... exited {result.returncode}: {error}")
        return result

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> PodmanPod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Volumes, the pod's network, every init container to completion, then the containers."""
        self._make_volumes()
        publish: list[str] = []
        for container in self.spec.get("containers") or []:
            for port in container.get("ports") or []:
                if self.host_network:
                    self.ports[int(port["containerPort"])] = int(port["containerPort"])
                    continue
                host = self.ports.setdefault(int(port["containerPort"]), free_port())
                publish += ["-p", f"127.0.0.1:{host}:{port['containerPort']}"]
        network = "host" if self.host_network else "slirp4netns:allow_host_loopback=true"
        self.podman("pod", "create", "--name", self.name, "--network", network, *publish)
        for init in self.spec.get("initContainers") or []:
            name = f"{self.name}-{init['name']}"
            self.podman("create", *self._container_args(init, name))
            result = self.podman("start", "--attach", name, check=False)
            self.logs[init["name"]] = result.stdout + result.stderr
            if result.returncode != 0:
                log = self.logs[init["name"]][-3000:]
                raise PodFailed(f"init container {init['name']} exited {result.returncode}: {log}")
        for container in self.spec.get("containers") or []:
            name = f"{self.name}-{container['name']}"
            self.podman("run", "--detach", *self._container_args(container, name))

    def rerun_init(self, name: str) -> str:
        """Run an init container again on the same volumes (a restarted pod keeps its PVC); its log."""
        result = self.podman("start", "--attach", f"{self.name}-{name}", check=False)
        if result.returncode != 0:
            raise PodFailed(f"init container {name} exited {result.returncode}: {result.stderr[-3000:]}")
        return result.stdout + result.stderr

    def container_state(self, name: str) -> str:
        """podman's state of a container of this pod (running, exited...)."""
        result = self.podman("inspect", "--format", "{{.State.Status}}", f"{self.name}-{name}", check=False)
        return result.stdout.strip()

    def exec(self, name: str, command: list[str], timeout: float) -> int:
        result = self.podman("exec", f"{self.name}-{name}", *command, check=False, timeout=timeout)
        return result.returncode

    def container_logs(self, name: str) -> str:
        result = self.podman("logs", f"{self.name}-{name}", check=False)
        return result.stdout + result.stderr

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.podman("pod", "rm", "--force", "--time", "5", self.name, check=False, timeout=120)
        for mount in self.tmpfs:
            subprocess.run(["umount", str(mount)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ translation

    def _make_volumes(self) -> None:
        context = self.spec.get("securityContext") or {}
        for volume in self.spec.get("volumes") or []:
            path = self.root / "volumes" / volume["name"]
            path.mkdir(parents=True)
            self.volumes[volume["name"]] = path
            if "emptyDir" in volume:
                limit = (volume["emptyDir"] or {}).get("sizeLimit")
                medium = (volume["emptyDir"] or {}).get("medium")
                if limit or medium == "Memory":
                    size = f",size={_size_bytes(limit)}" if limit else ""
                    subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=1777{size}", "tmpfs", str(path)],
                                   check=True, capture_output=True)  # fmt: skip
                    self.tmpfs.append(path)
                path.chmod(0o1777)  # as the kubelet makes an emptyDir: writable by any pod user
            elif "configMap" in volume:
                self._files(path, self.config_maps[volume["configMap"]["name"]], volume["configMap"])
            elif "secret" in volume:
                self._files(path, self.secrets[volume["secret"]["secretName"]], volume["secret"])
            else:
                raise PodFailed(f"volume {volume['name']}: only emptyDir, configMap, secret are translated")
            group = context.get("fsGroup")
            if group is not None and "emptyDir" not in volume:
                for item in [path, *path.rglob("*")]:
                    os.chown(item, 0, int(group))

    @staticmethod
    def _files(path: Path, data: Mapping[str, str], source: Mapping[str, Any]) -> None:
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            target = path / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
            target.chmod(0o440)

    def _container_args(self, container: Mapping[str, Any], name: str) -> list[str]:
        pod = self.spec.get("securityContext") or {}
        own = container.get("securityContext") or {}
        user = own.get("runAsUser", pod.get("runAsUser"))
        group = own.get("runAsGroup", pod.get("runAsGroup", 0))
        policy = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}
        pull = self.pull or policy[container.get("imagePullPolicy", "IfNotPresent")]
        args = ["--name", name, "--pod", self.name, "--pull", pull]
        args.append(f"--tls-verify={str(self.tls_verify).lower()}")
        if user is not None:
            args += ["--user", f"{user}:{group}"]
        if pod.get("fsGroup") is not None:
            args += ["--group-add", str(pod["fsGroup"])]
        if own.get("runAsNonRoot", pod.get("runAsNonRoot")) and user in (None, 0):
            raise PodFailed(f"container {container['name']}: runAsNonRoot without a non-zero runAsUser")
        if "ALL" in ((own.get("capabilities") or {}).get("drop") or []):
            args += ["--cap-drop", "all"]
        for cap in (own.get("capabilities") or {}).get("add") or []:
            args += ["--cap-add", cap]
        if own.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if own.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]
        for env in container.get("env") or []:
            args += ["--env", f"{env['name']}={self._env_value(env)}"]
        for mount in container.get("volumeMounts") or []:
            source = self.volumes[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
                source.mkdir(parents=True, exist_ok=True)
            mode = "ro" if mount.get("readOnly") else "rw"
            args += ["--volume", f"{source}:{mount['mountPath']}:{mode}"]
        if container.get("command"):
            args += ["--entrypoint", json.dumps(list(container["command"]))]
        args.append(container["image"])
        args += [str(a) for a in container.get("args") or []]
        return args

    def _env_value(self, env: Mapping[str, Any]) -> str:
        if "value" in env:
            return str(env["value"])
        source = env.get("valueFrom") or {}
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            return self.secrets[ref["name"]][ref["key"]]
        if "fieldRef" in source:
            return self.fields[source["fieldRef"]["fieldPath"]]
        raise PodFailed(f"env {env['name']}: only value, secretKeyRef and fieldRef are translated")

    @contextlib.contextmanager
    def running(self) -> Iterator[PodmanPod]:
        try:
            self.start()
            yield self
        finally:
            self.close()
