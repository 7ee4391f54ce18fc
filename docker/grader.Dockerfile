# The image `autograder grade --sandbox container` runs each probe group in.
#
#   autograder image build [--base-image IMAGE]    (or: make docker)
#
# Without a registry, `autograder image build` falls back to (and `--local` builds) an image
# with the same contract made from Debian's archive by debootstrap: see container.py.
#
# It holds an interpreter, numpy, pybind11 and a C++ toolchain, and nothing of the course:
# no reference library, no probes, no answers. The grader bind-mounts the submission's
# workspace and the probe runner of one unit read-only, and runs the container with no
# network, a read-only root, user 1000, no capabilities and memory/pids/CPU limits.
#
# The paths are a contract with the grader (autograder/engine/container.py):
#   /opt/runtime/bin/python3          the interpreter, started as `python3 -I -S -B`
#   /opt/runtime/include/pythonX.Y    its C headers (pybind11 builds)
#   /opt/site                         numpy and pybind11, added to sys.path by the runner
# The Python minor version must match the grader's (compiled extensions are built for it).
# For CUDA homeworks use a CUDA devel base with the same Python, e.g.
#   --base-image nvidia/cuda:12.4.1-devel-ubuntu22.04 (install python3.11 there first).

# `autograder image build` passes the grader's own Python minor version and numpy version.
ARG PYTHON_VERSION=3.11
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim-bookworm
FROM ${BASE_IMAGE}

ARG NUMPY_VERSION=2.4.6
ARG PYBIND11_VERSION=3.1.0

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       g++ make cmake ninja-build \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m pip install --no-cache-dir --target /opt/site \
       "numpy==${NUMPY_VERSION}" "pybind11==${PYBIND11_VERSION}" \
    && mkdir -p /opt/runtime/bin /opt/runtime/include /work /grader \
    && ln -s "$(command -v python3)" /opt/runtime/bin/python3 \
    && ln -s "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
       "/opt/runtime/include/python$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    && useradd --uid 1000 --create-home --shell /usr/sbin/nologin grader

USER 1000:1000
WORKDIR /work
ENV HOME=/tmp LANG=C.UTF-8 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
CMD ["/opt/runtime/bin/python3", "--version"]
