"""Helpers shared by hw4's public tests: inputs, comparisons, and small data sets on disk.

Expected values always come from numpy or PyTorch (or from a formula written out in the
test), never from needle itself.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import needle as ndl
import numpy as np


def rand(*shape, low=-1.0, high=1.0, seed=0) -> np.ndarray:
    """Uniform float32 samples; the same ``shape`` and ``seed`` always give the same array."""
    rng = np.random.default_rng(1000 * seed + 17 * len(shape) + sum(shape))
    return rng.uniform(low, high, size=shape).astype(np.float32)


def tensor(array, device, requires_grad=True) -> ndl.Tensor:
    return ndl.Tensor(
        np.asarray(array, dtype=np.float32), device=device, requires_grad=requires_grad
    )


def as_numpy(value) -> np.ndarray:
    """A needle Tensor / NDArray, a torch tensor, or anything numpy takes, as a numpy array."""
    if hasattr(value, "detach"):  # torch
        value = value.detach()
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value)


def assert_close(got, expected, rtol=1e-5, atol=1e-5, what="result"):
    """Shapes first (with a message), then values (numpy reports the worst element)."""
    got, expected = as_numpy(got), as_numpy(expected)
    assert got.shape == expected.shape, f"{what}: expected shape {expected.shape}, got {got.shape}"
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=what)


def assert_on_device(t: ndl.Tensor, device, what="result"):
    """``t`` is a float32 needle Tensor whose data is an NDArray on ``device``."""
    assert isinstance(t, ndl.Tensor), f"{what}: expected a needle Tensor, got {type(t).__name__}"
    data = t.realize_cached_data()
    assert isinstance(data, ndl.NDArray), (
        f"{what}: the Tensor's data should be a needle NDArray, got {type(data).__name__}"
    )
    assert t.device == device, f"{what}: expected a tensor on {device}, got one on {t.device}"
    assert t.dtype == "float32", f"{what}: expected float32, got {t.dtype}"


def parameter(array, device) -> ndl.nn.Parameter:
    return ndl.nn.Parameter(tensor(array, device))


# ---------------------------------------------------------------------------------------------
# A CIFAR-10-format folder (the real set is 170 MB; the format is what the loader must read)


def write_cifar_folder(folder: Path, per_batch: int = 4, test_count: int = 6, seed: int = 0):
    """Write ``data_batch_1..5`` and ``test_batch`` in the format of ``cifar-10-batches-py``.

    Each file is a pickled dict with bytes keys: ``b"data"`` uint8 ``(n, 3072)`` (one image per
    row: 1024 red, 1024 green, 1024 blue values, each plane 32 x 32 row-major) and
    ``b"labels"`` (a list of n ints in 0-9), as the real batches are.

    Returns:
        ``(train_data, train_labels, test_data, test_labels)`` as numpy arrays, in file order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    parts = {}
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        n = test_count if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        record = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"image_{i}.png".encode() for i in range(n)],
        }
        with open(folder / name, "wb") as stream:
            pickle.dump(record, stream, protocol=2)
        parts[name] = (data, np.array(labels))
    train = [parts[f"data_batch_{k}"] for k in range(1, 6)]
    return (
        np.concatenate([d for d, _ in train]),
        np.concatenate([y for _, y in train]),
        parts["test_batch"][0],
        parts["test_batch"][1],
    )


# ---------------------------------------------------------------------------------------------
# Penn-Treebank-format text

TRAIN_TEXT = """the cat sat on the mat
a dog sat on a log
the dog saw the cat
 N years ago the cat ran
"""

TEST_TEXT = """the bird sat on the cat
a <unk> ran
"""


def write_ptb_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text(TRAIN_TEXT)
    (folder / "test.txt").write_text(TEST_TEXT)
    return folder


def ptb_ids_oracle(texts, max_lines=None):
    """Word ids the way the course numbers them: in order of first appearance over ``texts``
    (train first), ``<eos>`` after every line. Returns (list of id lists, vocabulary)."""
    vocabulary: dict[str, int] = {}
    streams = []
    for text in texts:
        ids = []
        for number, line in enumerate(text.splitlines(keepends=True)):
            if max_lines is not None and number >= max_lines:
                break
            for word in line.split() + ["<eos>"]:
                ids.append(vocabulary.setdefault(word, len(vocabulary)))
        streams.append(ids)
    return streams, vocabulary
