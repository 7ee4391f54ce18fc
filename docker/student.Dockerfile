# The student environment of one homework: JupyterLab, the homework's release, and the tools
# to build and test it (a C++ compiler, CMake, pybind11, pytest).
#
#   docker build -f docker/student.Dockerfile --build-arg HW=hw1 -t dlsys-hw1 .
#   docker run --rm -p 8888:8888 -v "$PWD/work-hw1:/home/student/work" dlsys-hw1
#
# The release is generated inside the build (first stage) from this repository's sources, so
# the image always matches them. The second stage holds only the release, never the solutions.
# On first start the release is copied to /home/student/work (a volume keeps your work);
# JupyterLab then opens there. `make check` and `make submit` work in its terminal.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- stage 1: generate the release from the instructor sources ---------------------------
FROM ${PYTHON_IMAGE} AS release
ARG HW=hw1
WORKDIR /src
RUN pip install --no-cache-dir nbformat
COPY autograder/ autograder/
COPY assignments/ assignments/
COPY library/ library/
COPY solutions/ solutions/
RUN python -m autograder.authoring.release "${HW}" --out /release && rm -f /release/*.zip

# ---- stage 2: the student's environment ---------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG HW=hw1
ENV HW=${HW} \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake make ninja-build \
    && rm -rf /var/lib/apt/lists/*

# The homework's Python requirements (CPU-only PyTorch where the tests use it as an oracle).
COPY --from=release /release/${HW}/requirements.txt /tmp/requirements.txt
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r /tmp/requirements.txt

RUN useradd --create-home --shell /bin/bash student
COPY --from=release --chown=student:student /release/${HW} /opt/release/${HW}
USER student
WORKDIR /home/student

# Seed the work folder from the release on first start (an empty mounted volume included),
# then start JupyterLab in it.
CMD ["bash", "-c", "mkdir -p work && if [ -z \"$(ls -A work)\" ]; then cp -r /opt/release/${HW}/. work/; fi && cd work && exec jupyter lab --ip=0.0.0.0 --port=8888 --no-browser"]
EXPOSE 8888
