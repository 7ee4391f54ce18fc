# The student environment of one homework: JupyterLab, the homework's release, and the tools
# to build and test it (a C++ compiler, CMake, pybind11, pytest). Built from a RELEASE folder
# alone (the context), so anyone holding the release can build it; nothing of the course
# repository (solutions, reference library, probes) is in the context.
#
#   python -m autograder release hw1 --out build/release        # instructors; or unzip hw1.zip
#   docker build -f docker/student.Dockerfile -t dlsys-hw1 build/release/hw1
#   docker run --rm -p 8888:8888 -v "$PWD/work-hw1:/home/student/work" dlsys-hw1
#
# The -v folder may belong to any host user: the entrypoint (student-entrypoint.sh, inlined
# below) runs JupyterLab as the folder's owner, so the files you create stay yours. On first
# start an empty folder is seeded with the release. `make check` and `make submit` work in
# JupyterLab's terminal. Rootless podman: the same command (root in the container is you on
# the host, so JupyterLab runs as root there). `--user "$(id -u):$(id -g)"` works too (HOME
# then lives in /tmp).
#
# PyTorch (CPU-only wheels) is installed only when the release's requirements.txt lists
# torch (the CMake homeworks, where tests use it as an oracle).
#
# BASE_IMAGE: any Debian/Ubuntu image (python:3.X-slim has Python already; on a plain Debian
# base, e.g. the offline grader image localhost/needle-grader:local-..., Debian's python3 is
# installed). Python packages go to a virtual environment in /opt/venv.

ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8

USER 0
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake make ninja-build passwd ca-certificates \
    && if ! command -v python3 >/dev/null || ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
         apt-get install -y --no-install-recommends python3 python3-venv python3-dev; fi \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The homework's Python requirements; CPU-only PyTorch first, only if they list torch.
COPY requirements.txt /tmp/requirements.txt
RUN if grep -Eiq '^[[:space:]]*torch([^a-z0-9_-]|$)' /tmp/requirements.txt; then \
        pip install --index-url https://download.pytorch.org/whl/cpu torch; fi \
    && pip install -r /tmp/requirements.txt

RUN useradd --create-home --shell /bin/bash student 2>/dev/null || true
COPY --chown=0:0 . /opt/release
RUN chmod -R a+rX /opt/release \
    && mkdir -p /opt/venv/etc/jupyter \
    && echo '{"ServerApp": {"allow_root": true}}' > /opt/venv/etc/jupyter/jupyter_server_config.json \
    && printf '%s\n' \
    '#!/bin/sh' \
    '# Run as the owner of the mounted work folder; seed it from the release when empty.' \
    'set -e' \
    'work=/home/student/work' \
    'mkdir -p "$work"' \
    'seed() { if [ -z "$(ls -A "$work")" ]; then cp -r /opt/release/. "$work"/; fi; }' \
    'if [ "$(id -u)" != 0 ]; then' \
    '  [ -w "$HOME" ] || { export HOME="/tmp/home-$(id -u)"; mkdir -p "$HOME"; }' \
    '  seed; cd "$work"; exec "$@"' \
    'fi' \
    'uid=$(stat -c %u "$work"); gid=$(stat -c %g "$work")' \
    'if [ "$uid" = 0 ] && ! grep -Eq "^ *0 +0 +4294967295" /proc/self/uid_map; then' \
    '  export HOME=/root; seed; cd "$work"; exec "$@"' \
    'fi' \
    'if [ "$uid" = 0 ]; then' \
    '  uid=$(id -u student); gid=$(id -g student); chown "$uid:$gid" "$work"' \
    'fi' \
    'if [ "$uid" != "$(id -u student)" ]; then' \
    '  groupmod -o -g "$gid" student; usermod -o -u "$uid" -g "$gid" student' \
    '  chown -R "$uid:$gid" /home/student/.[!.]* 2>/dev/null || true; chown "$uid:$gid" /home/student' \
    'fi' \
    'if [ -z "$(ls -A "$work")" ]; then cp -r /opt/release/. "$work"/; chown -R "$uid:$gid" "$work"; fi' \
    'export HOME=/home/student USER=student' \
    'cd "$work"' \
    'exec setpriv --reuid "$uid" --regid "$gid" --clear-groups "$@"' \
    > /usr/local/bin/student-entrypoint \
    && chmod 755 /usr/local/bin/student-entrypoint

WORKDIR /home/student
EXPOSE 8888
ENTRYPOINT ["/usr/local/bin/student-entrypoint"]
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]
