# needle-course: every target works from a fresh clone and sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.needle-setup
NATIVE_SOURCES := pyproject.toml library/CMakeLists.txt $(wildcard library/src/*)
# Tests and benchmarks run single-threaded unless told otherwise: faster and reproducible
# on a shared 2-core machine.
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export NEEDLE_NUM_THREADS ?= 1
PYTEST := $(PY) -m pytest -q -p no:cacheprovider

.PHONY: setup system-deps test test-slow test-long test-all mistakes lint demo bench release lectures docker clean \
        train-mlp train-resnet9 train-lm serve-demo load-test

setup: $(STAMP)

$(STAMP): $(NATIVE_SOURCES)
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,notebooks,server]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# bubblewrap gives the autograder's local sandbox its namespaces; podman runs the container path.
system-deps:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap (autograder sandbox)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null 2>&1 \
	      || echo "warning: could not install bubblewrap; the sandbox falls back to unshare/rlimits"; \
	  else echo "note: bubblewrap not found and cannot be installed here; see README"; fi; \
	fi
	@if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 \
	    || ! command -v debootstrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing podman, runc, uidmap, slirp4netns, debootstrap (--sandbox container)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      podman runc uidmap slirp4netns fuse-overlayfs debootstrap) >/dev/null 2>&1 \
	      || echo "warning: could not install podman/runc/debootstrap; --sandbox container needs them"; \
	  else echo "note: podman/runc/debootstrap not found (only for --sandbox container); see README"; fi; \
	fi
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium, chromium-driver (the course server's browser test)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium chromium-driver) >/dev/null 2>&1 \
	      || echo "warning: could not install chromium/chromium-driver; the browser test skips"; \
	  else echo "note: chromium/chromedriver not found (only for the server's browser test); see README"; fi; \
	fi

lint: setup
	$(PY) -m ruff check library autograder assignments lectures
	$(PY) -m ruff format --check library autograder assignments lectures
	$(PY) -m mypy

# The tests CI runs (about 25 to 30 minutes on 2 cores): the library on every backend, the
# autograder (hw1, hw4 and hw4_extra graded end to end, the adversarial and security suites, batches
# and signals, the Gradescope export, grading on a local Dask cluster, the course server's API,
# PostgreSQL, browser and short load tests), the releases, hw1's realistic mistakes (caught by
# grading), the quick notebooks and lectures. What takes a minute or more per case is marked slow
# or long.
test: setup lint
	$(PYTEST) library/tests autograder/tests assignments lectures -m "not slow and not long"
	NEEDLE_BACKEND=np $(PYTEST) library/tests/test_ops.py library/tests/test_autograd.py

# The tests marked slow (about an hour): mutation coverage of every homework, a batch of 50,
# hw0/hw2/hw3 grading end to end, hw3's check loop, the heavy notebooks and lectures.
test-slow: setup
	$(PYTEST) library/tests autograder/tests assignments lectures -m "slow and not long"

# What takes minutes per case (about 30 minutes from cold): the container sandbox with podman
# (offline Debian image, hw0 and hw1), the Gradescope bundle in an offline Debian container,
# and the realistic-mistake subset of the C++ homeworks.
test-long: setup
	$(PYTEST) library/tests autograder/tests assignments lectures -m long

# Everything: make test, then the slow and the long tests.
test-all: test test-slow test-long

# The whole catalogue of realistic mistakes, with a report per homework in build/mistakes/.
mistakes: setup
	$(PY) -m autograder.authoring.mistakes

# The tour: needle trains MLPResNet on the embedded MNIST sample, then the platform releases
# hw1 and grades three submissions (reference, half-done, malicious) in the sandbox.
demo: setup
	$(PY) library/apps/train.py demo --plot build/demo/mlp_resnet_curve.png
	$(PY) -m autograder demo

bench: setup
	env -u NEEDLE_NUM_THREADS -u OMP_NUM_THREADS -u OPENBLAS_NUM_THREADS $(PY) library/benchmarks/bench.py --json build/bench.json

release: setup
	$(PY) -m autograder release all --out build/release

lectures: setup
	$(PY) -m lectures.run --out build/lectures

train-mlp: setup
	$(PY) library/apps/train.py mlp-mnist

train-resnet9: setup
	$(PY) library/apps/train.py resnet9-fashion

train-lm: setup
	$(PY) library/apps/train.py lstm-ptb

# The course server on a demo course (build/serve-demo: three students, an instructor, hw1's
# release whose make submit uploads here): prints the tokens and serves on 127.0.0.1:8000.
serve-demo: setup
	$(PY) -m autograder serve-demo --out build/serve-demo --port 8000

# The course server under load: 50 students, 200 hw1 submissions, two local grading workers;
# again with a worker killed and with the server restarted mid-run (p50/p95 upload-to-feedback
# times and graded/lost/duplicated counts in build/load-test/results.json).
load-test: setup
	$(PY) -m autograder.server.loadtest --students 50 --submissions 200 --work build/load-test

# The container sandbox's image: docker/grader.Dockerfile where a registry answers, else the
# local image (Debian minbase from the Debian archive + g++/CMake + this machine's runtime).
docker: setup
	@$(PY) -m autograder image build

clean:
	rm -rf build $(VENV) .pytest_cache
