"""Hidden probes of hw0 (numpy refresher and the C++ softmax regression).

The submission is ``src/simple_ml.py`` and ``src/simple_ml_ext.cpp``; the grader compiles the
C++ into ``src/simple_ml_ext*.so`` in the sandbox (``build = "ext"``) before the probes run.
Units (docs/course.md#grading-units): ``add``, ``parse_mnist``, ``softmax_loss``,
``softmax_regression_epoch`` (the numpy one), ``nn_epoch``, ``softmax_regression_epoch_cpp``.

``parse_mnist`` is probed on IDX files the probe writes itself (seeded pixels and labels, in
the sandbox's private /tmp) and on the release's embedded MNIST test split.
"""

from autograder.engine.kit import probe, rand, randint, randn

SEARCH_PATH = ["src", ""]


# --- add -------------------------------------------------------------------------------------


@probe("add")
def add_numbers():
    from simple_ml import add

    results = [add(3, 4.5), add(-2, 7), add(0.25, 0.5)]
    return [results, [type(r).__name__ for r in results]]


@probe("add")
def add_arrays():
    from simple_ml import add

    return add(randn(3, 4, seed=1), randn(3, 4, seed=2))


# --- parse_mnist -----------------------------------------------------------------------------


def _write_idx(folder, count, rows, cols, seed):
    """A small gzip'd IDX image/label pair with seeded contents; returns both paths."""
    import gzip
    import os
    import struct

    import numpy as np

    pixels = randint(count, rows, cols, seed=seed, low=0, high=256, dtype="uint8")
    labels = randint(count, seed=seed + 1, low=0, high=10, dtype="uint8")
    os.makedirs(folder, exist_ok=True)
    images_path = os.path.join(folder, f"images-{seed}.gz")
    labels_path = os.path.join(folder, f"labels-{seed}.gz")
    with gzip.open(images_path, "wb") as stream:
        stream.write(
            struct.pack(">4I", 2051, count, rows, cols) + np.ascontiguousarray(pixels).tobytes()
        )
    with gzip.open(labels_path, "wb") as stream:
        stream.write(struct.pack(">2I", 2049, count) + labels.tobytes())
    return images_path, labels_path


@probe("parse_mnist")
def parse_mnist_small_files():
    from simple_ml import parse_mnist

    X, y = parse_mnist(*_write_idx("/tmp/idx", count=9, rows=5, cols=4, seed=11))
    return [X, y, str(X.dtype), str(y.dtype)]


@probe("parse_mnist")
def parse_mnist_extreme_pixels():
    """All-zero and all-255 images: the scale is global (0 -> 0.0, 255 -> 1.0)."""
    import gzip
    import struct

    import numpy as np
    from simple_ml import parse_mnist

    pixels = np.zeros((2, 3, 3), dtype=np.uint8)
    pixels[1] = 255
    with gzip.open("/tmp/extreme-images.gz", "wb") as stream:
        stream.write(struct.pack(">4I", 2051, 2, 3, 3) + pixels.tobytes())
    with gzip.open("/tmp/extreme-labels.gz", "wb") as stream:
        stream.write(struct.pack(">2I", 2049, 2) + bytes([3, 9]))
    X, y = parse_mnist("/tmp/extreme-images.gz", "/tmp/extreme-labels.gz")
    return [X, y]


@probe("parse_mnist", rtol=1e-6)
def parse_mnist_test_split():
    import numpy as np
    from simple_ml import parse_mnist

    X, y = parse_mnist("data/t10k-images-idx3-ubyte.gz", "data/t10k-labels-idx1-ubyte.gz")
    picks = [7, 123, 4567, len(y) - 1]
    return [list(X.shape), list(y.shape), np.linalg.norm(X[picks], axis=1), y[picks]]


# --- softmax_loss ----------------------------------------------------------------------------


def _loss(Z, y):
    import numpy as np
    from simple_ml import softmax_loss

    return np.asarray(softmax_loss(Z, y), dtype=np.float64).reshape(())


@probe("softmax_loss")
def softmax_loss_zero_logits():
    import numpy as np

    return _loss(np.zeros((12, 6), dtype=np.float32), randint(12, seed=21, low=0, high=6))


@probe("softmax_loss")
def softmax_loss_random_logits():
    return [
        _loss(randn(40, 10, seed=22), randint(40, seed=23, low=0, high=10, dtype="uint8")),
        _loss(randn(7, 3, seed=24, scale=3.0), randint(7, seed=25, low=0, high=3)),
    ]


# --- the epochs ------------------------------------------------------------------------------


def _problem(samples, features, classes, seed):
    import numpy as np

    X = randn(samples, features, seed=seed) / np.float32(np.sqrt(features))
    y = randint(samples, seed=seed + 1, low=0, high=classes, dtype="uint8")
    return X, y


@probe("softmax_regression_epoch", rtol=1e-4, atol=1e-5)
def softmax_regression_epoch_in_place():
    import numpy as np
    from simple_ml import softmax_regression_epoch

    X, y = _problem(60, 8, 4, seed=31)
    theta = np.zeros((8, 4), dtype=np.float32)
    returned = softmax_regression_epoch(X, y, theta, lr=0.5, batch=20)
    return [theta, returned is None]


@probe("softmax_regression_epoch", rtol=1e-4, atol=1e-5)
def softmax_regression_epoch_from_nonzero_theta():
    from simple_ml import softmax_regression_epoch

    X, y = _problem(50, 6, 3, seed=32)  # batches of 15, 15, 15 and a last one of 5
    theta = rand(6, 3, seed=33, low=-0.5, high=0.5)
    softmax_regression_epoch(X, y, theta, lr=0.2, batch=15)
    return theta


@probe("nn_epoch", rtol=1e-4, atol=1e-5)
def nn_epoch_in_place():
    import numpy as np
    from simple_ml import nn_epoch

    X, y = _problem(43, 10, 3, seed=41)  # five batches of 8 and a last one of 3
    W1 = randn(10, 12, seed=42) / np.float32(np.sqrt(12))
    W2 = randn(12, 3, seed=43) / np.float32(np.sqrt(3))
    nn_epoch(X, y, W1, W2, lr=0.3, batch=8)
    return [W1, W2]


@probe("nn_epoch", rtol=1e-4, atol=1e-5)
def nn_epoch_single_batch():
    import numpy as np
    from simple_ml import nn_epoch

    X, y = _problem(25, 5, 4, seed=44)
    W1 = randn(5, 7, seed=45) / np.float32(np.sqrt(7))
    W2 = randn(7, 4, seed=46) / np.float32(np.sqrt(4))
    nn_epoch(X, y, W1, W2, lr=1.0, batch=25)
    return [W1, W2]


@probe("softmax_regression_epoch_cpp", rtol=1e-4, atol=1e-5)
def softmax_regression_epoch_cpp_in_place():
    import numpy as np
    from simple_ml_ext import softmax_regression_epoch_cpp

    X, y = _problem(60, 8, 4, seed=51)
    theta = np.zeros((8, 4), dtype=np.float32)
    softmax_regression_epoch_cpp(X, y, theta, lr=0.5, batch=20)
    return theta


@probe("softmax_regression_epoch_cpp", rtol=1e-4, atol=1e-5)
def softmax_regression_epoch_cpp_partial_last_batch():
    from simple_ml_ext import softmax_regression_epoch_cpp

    X, y = _problem(52, 5, 6, seed=52)  # seven batches of 7 and a last one of 3
    theta = rand(5, 6, seed=53, low=-0.3, high=0.3)
    softmax_regression_epoch_cpp(X, y, theta, lr=0.1, batch=7)
    return theta
