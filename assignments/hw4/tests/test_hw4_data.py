"""Public tests of hw4, parts 2 and 6: ``CIFAR10Dataset`` (``cifar10``) and the Penn Treebank
helpers ``Dictionary``, ``Corpus``, ``batchify``, ``get_batch`` (``ptb``).

Run them with ``make check K=cifar10`` / ``make check K=ptb``. The CIFAR-10 tests write a small
folder in the real CIFAR-10 file format (the full set is a 170 MB download, see the notebook),
and check every image against the raw bytes; the PTB tests use small text files written here
and the validation/test text embedded in needle.
"""

from __future__ import annotations

import os
import warnings

import needle as ndl
import numpy as np
import pytest
from hw4_support import (
    TEST_TEXT,
    TRAIN_TEXT,
    assert_close,
    assert_on_device,
    ptb_ids_oracle,
    write_cifar_folder,
    write_ptb_folder,
)

pytestmark = pytest.mark.hw4


# ---------------------------------------------------------------------------------------------
# CIFAR-10


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    return folder, write_cifar_folder(folder, per_batch=4, test_count=6, seed=0)


def expected_images(raw: np.ndarray) -> np.ndarray:
    """Rows of 3072 bytes → (n, 3, 32, 32) float32 in [0, 1] (planes R, G, B; rows of 32)."""
    return raw.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0


def test_cifar10_dataset_lengths_and_items(cifar_folder):
    folder, (train_x, train_y, test_x, test_y) = cifar_folder
    train = ndl.data.CIFAR10Dataset(str(folder), train=True)
    test = ndl.data.CIFAR10Dataset(str(folder), train=False)
    assert len(train) == 20, f"train=True reads data_batch_1..5 (5 x 4 images), got {len(train)}"
    assert len(test) == 6, f"train=False reads test_batch (6 images), got {len(test)}"
    for dataset, raw_x, raw_y, name in (
        (train, train_x, train_y, "train"),
        (test, test_x, test_y, "test"),
    ):
        for index in (0, 5, len(dataset) - 1):
            item = dataset[index]
            assert isinstance(item, tuple) and len(item) == 2, "an item is (image, label)"
            image, label = item
            assert isinstance(image, np.ndarray), f"images are numpy arrays, got {type(image)}"
            assert image.shape == (3, 32, 32), f"an image is (3, 32, 32), got {image.shape}"
            assert image.dtype == np.float32, f"images are float32, got {image.dtype}"
            assert_close(
                image,
                expected_images(raw_x[index : index + 1])[0],
                rtol=1e-6,
                atol=1e-7,
                what=f"{name} image {index}: bytes / 255, channel planes first",
            )
            assert int(label) == raw_y[index], f"{name} label {index}"


def test_cifar10_dataset_attributes(cifar_folder):
    folder, (train_x, train_y, _, _) = cifar_folder
    dataset = ndl.data.CIFAR10Dataset(str(folder), train=True)
    assert dataset.X.shape == (20, 3, 32, 32), f"X is (N, 3, 32, 32), got {dataset.X.shape}"
    assert dataset.X.dtype == np.float32
    assert 0.0 <= dataset.X.min() and dataset.X.max() <= 1.0, "pixels are scaled to [0, 1]"
    assert_close(dataset.X, expected_images(train_x), rtol=1e-6, atol=1e-7, what="X")
    np.testing.assert_array_equal(np.asarray(dataset.y).reshape(-1), train_y)


def test_cifar10_dataset_index_arrays_and_slices(cifar_folder):
    folder, (train_x, train_y, _, _) = cifar_folder
    dataset = ndl.data.CIFAR10Dataset(str(folder), train=True)
    picked = np.array([7, 0, 19, 3])
    images, labels = dataset[picked]
    assert images.shape == (4, 3, 32, 32), f"dataset[index_array] stacks images, got {images.shape}"
    assert_close(images, expected_images(train_x[picked]), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(labels).reshape(-1), train_y[picked])
    images, labels = dataset[2:5]
    assert images.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(np.asarray(labels).reshape(-1), train_y[2:5])


def test_cifar10_dataset_applies_transforms_to_height_width_channels(cifar_folder):
    folder, (train_x, _, _, _) = cifar_folder
    flip = ndl.data.RandomFlipHorizontal(p=1.0)  # always flips the width axis of an H x W x C image
    dataset = ndl.data.CIFAR10Dataset(str(folder), train=True, transforms=[flip])
    image, _ = dataset[3]
    assert image.shape == (3, 32, 32), f"transformed images are (3, 32, 32), got {image.shape}"
    assert_close(
        image,
        expected_images(train_x[3:4])[0][:, :, ::-1],
        rtol=1e-6,
        atol=1e-7,
        what="a horizontal flip reverses the width (the last axis of a 3 x 32 x 32 image)",
    )


def test_cifar10_loader_batches_on_device(cifar_folder, device):
    folder, (train_x, train_y, _, _) = cifar_folder
    dataset = ndl.data.CIFAR10Dataset(str(folder), train=True)
    loader = ndl.data.DataLoader(dataset, batch_size=8, shuffle=False, device=device)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(8, 3, 32, 32), (8, 3, 32, 32), (4, 3, 32, 32)]
    X, y = batches[1]
    assert_on_device(X, device, "image batch")
    assert_on_device(y, device, "label batch")
    assert_close(X, expected_images(train_x[8:16]), rtol=1e-6, atol=1e-7, what="second batch")
    assert_close(y, train_y[8:16].astype(np.float32), rtol=0, atol=0, what="second batch labels")


def test_cifar10_real_dataset_if_downloaded():
    try:
        folder = ndl.data.cifar10_dir()
    except ndl.data.DataNotFoundError:
        pytest.skip("CIFAR-10 is not downloaded (python -m needle.data.download cifar10)")
    train = ndl.data.CIFAR10Dataset(folder, train=True)
    test = ndl.data.CIFAR10Dataset(folder, train=False)
    assert (len(train), len(test)) == (50000, 10000)
    image, label = train[123]
    assert image.shape == (3, 32, 32) and 0 <= int(label) <= 9


# ---------------------------------------------------------------------------------------------
# Penn Treebank


def test_ptb_dictionary():
    dictionary = ndl.data.Dictionary()
    assert len(dictionary) == 0
    ids = [dictionary.add_word(w) for w in ["the", "cat", "the", "sat", "cat", "<eos>"]]
    assert ids == [0, 1, 0, 2, 1, 3], f"ids count up in order of first appearance, got {ids}"
    assert len(dictionary) == 4, f"4 distinct words, got len() = {len(dictionary)}"
    assert dictionary.word2idx == {"the": 0, "cat": 1, "sat": 2, "<eos>": 3}
    assert dictionary.idx2word == ["the", "cat", "sat", "<eos>"]


def test_ptb_corpus_ids_and_shared_dictionary(tmp_path):
    corpus = ndl.data.Corpus(str(write_ptb_folder(tmp_path)))
    (train, test), vocabulary = ptb_ids_oracle([TRAIN_TEXT, TEST_TEXT])
    assert corpus.train == train, (
        "train ids: words numbered by first appearance, '<eos>' after every line"
    )
    assert corpus.test == test, "test ids use the SAME dictionary, growing it with new words"
    assert len(corpus.dictionary) == len(vocabulary)
    assert corpus.dictionary.idx2word == list(vocabulary)


@pytest.mark.parametrize("max_lines", [1, 2])
def test_ptb_corpus_max_lines(tmp_path, max_lines):
    corpus = ndl.data.Corpus(str(write_ptb_folder(tmp_path)), max_lines=max_lines)
    (train, test), _ = ptb_ids_oracle([TRAIN_TEXT, TEST_TEXT], max_lines=max_lines)
    assert corpus.train == train, f"only the first {max_lines} line(s) of train.txt"
    assert corpus.test == test, f"only the first {max_lines} line(s) of test.txt"


def test_ptb_corpus_on_the_embedded_text():
    folder = ndl.data.ptb_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # without train.txt the validation text stands in
        corpus = ndl.data.Corpus(folder, max_lines=200)
    texts = []
    for split in (corpus.train_split, "test"):
        candidates = [f"{folder}/ptb.{split}.txt", f"{folder}/{split}.txt"]
        path = next(p for p in candidates if os.path.isfile(p))
        with open(path, encoding="utf-8") as stream:
            texts.append(stream.read())
    (train, test), vocabulary = ptb_ids_oracle(texts, max_lines=200)
    assert corpus.train == train and corpus.test == test
    assert len(corpus.dictionary) == len(vocabulary) <= 10000


def test_ptb_batchify_example():
    got = ndl.data.batchify(list(range(11)), batch_size=2, device=None, dtype="float32")
    expected = np.array([[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]])
    assert isinstance(got, np.ndarray), f"batchify returns a numpy array, got {type(got)}"
    assert got.shape == (5, 2), (
        f"11 ids in 2 columns: 5 rows (the last id is dropped), got shape {got.shape}"
    )
    np.testing.assert_array_equal(
        got, expected, err_msg="column j is the j-th contiguous piece of the stream"
    )


@pytest.mark.parametrize("length, batch_size", [(100, 4), (37, 5), (12, 12)])
def test_ptb_batchify_columns(length, batch_size):
    data = list(np.random.default_rng(length).integers(0, 50, size=length))
    got = ndl.data.batchify(data, batch_size, device=None, dtype="float32")
    nbatch = length // batch_size
    assert got.shape == (nbatch, batch_size)
    for j in range(batch_size):
        np.testing.assert_array_equal(got[:, j], data[j * nbatch : (j + 1) * nbatch])


def test_ptb_get_batch_windows(device):
    batches = np.arange(30).reshape(10, 3)  # 10 rows of 3 streams
    data, target = ndl.data.get_batch(batches, 0, 4, device=device, dtype="float32")
    assert_on_device(data, device, "data")
    assert_on_device(target, device, "target")
    assert data.shape == (4, 3), f"data is (bptt, batch_size), got {data.shape}"
    assert target.shape == (12,), f"target is (bptt * batch_size,), got {target.shape}"
    assert_close(data, batches[0:4], rtol=0, atol=0, what="data = rows i .. i+bptt-1")
    assert_close(target, batches[1:5].reshape(-1), rtol=0, atol=0, what="target = next rows")
    # Near the end the window is shorter: only nbatch - 1 - i rows have a next row.
    data, target = ndl.data.get_batch(batches, 7, 4, device=device, dtype="float32")
    assert data.shape == (2, 3), f"rows 7, 8 have next words (row 9 has none): got {data.shape}"
    assert_close(data, batches[7:9], rtol=0, atol=0)
    assert_close(target, batches[8:10].reshape(-1), rtol=0, atol=0)


def test_ptb_get_batch_on_a_corpus(tmp_path, device):
    corpus = ndl.data.Corpus(str(write_ptb_folder(tmp_path)))
    batches = ndl.data.batchify(corpus.train, 2, device=device, dtype="float32")
    data, target = ndl.data.get_batch(batches, 3, 5, device=device, dtype="float32")
    assert data.shape == (5, 2) and target.shape == (10,)
    assert_close(data, batches[3:8], rtol=0, atol=0)
    assert_close(target, batches[4:9].reshape(-1), rtol=0, atol=0)
