"""needle.data: loaders against files written here in the real formats, the embedded samples,
transforms and DataLoader order against numpy replays of the same random draws, PTB batching,
where data are found, and the downloader against a local HTTP server (no network needed)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
import re
import socket
import tarfile
import threading
from pathlib import Path

import needle as ndl
import numpy as np
import pytest
from needle.data import download, locate

EMBEDDED = Path(locate.__file__).parent / "embedded"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


# ---- writing the real formats (independently of the library) -----------------------------
def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """IDX: two zero bytes, type 0x08 (uint8), ndim, big-endian uint32 sizes, values."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def decode_idx_gz(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_mnist(folder: Path, count: int, seed: int, prefix: str = "t10k"):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return images, labels


def crop_oracle(img: np.ndarray, shift_x: int, shift_y: int) -> np.ndarray:
    """out[i, j] = img[i + shift_x, j + shift_y] when inside the image, else 0 (loops)."""
    out = np.zeros_like(img)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            if 0 <= i + shift_x < img.shape[0] and 0 <= j + shift_y < img.shape[1]:
                out[i, j] = img[i + shift_x, j + shift_y]
    return out


# ---- IDX reading ---------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_shapes_and_values(tmp_path, compress):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    write_idx(tmp_path / "i", images, compress)
    write_idx(tmp_path / "l", labels, compress)
    np.testing.assert_array_equal(ndl.data.read_idx(tmp_path / "i"), images)
    np.testing.assert_array_equal(ndl.data.read_idx(tmp_path / "l"), labels)


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    write_idx(tmp_path / "ok", np.zeros((3, 4, 4), dtype=np.uint8), compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        ndl.data.read_idx(tmp_path / "short")
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        ndl.data.read_idx(tmp_path / "text")


# ---- MNISTDataset ----------------------------------------------------------------------------
@pytest.mark.hw2
def test_mnist_dataset_reads_written_files(tmp_path):
    images, labels = write_mnist(tmp_path, 13, seed=2)
    ds = ndl.data.MNISTDataset(
        str(tmp_path / "t10k-images-idx3-ubyte.gz"), str(tmp_path / "t10k-labels-idx1-ubyte.gz")
    )
    expected = images.astype(np.float32)[..., None] / np.float32(255)
    assert len(ds) == 13
    image, label = ds[4]
    assert image.shape == (28, 28, 1) and image.dtype == np.float32
    np.testing.assert_array_equal(image, expected[4])
    assert label == labels[4]
    for index in (slice(2, 7), np.array([5, 0, 3]), [1, 12], -1):
        batch_images, batch_labels = ds[index]
        np.testing.assert_array_equal(batch_images, expected[index])
        np.testing.assert_array_equal(batch_labels, labels[index])
    all_images = ds[:][0]
    assert all_images.min() >= 0.0 and all_images.max() <= 1.0
    assert all_images.max() == pytest.approx(images.max() / 255)


@pytest.mark.hw2
def test_mnist_dataset_applies_transforms_in_order(tmp_path):
    images, _ = write_mnist(tmp_path, 6, seed=3)
    transforms = [ndl.data.RandomCrop(4), ndl.data.RandomFlipHorizontal(0.5)]
    ds = ndl.data.MNISTDataset(
        tmp_path / "t10k-images-idx3-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte.gz", transforms
    )
    np.random.seed(11)
    got = ds[np.arange(6)][0]
    got_single = ds[2][0]
    np.random.seed(11)
    scaled = images.astype(np.float32)[..., None] / np.float32(255)
    expected = []
    for img in list(scaled) + [scaled[2]]:
        shift_x, shift_y = np.random.randint(-4, 5, size=2)
        out = crop_oracle(img, shift_x, shift_y)
        if np.random.rand() < 0.5:
            out = out[:, ::-1]
        expected.append(out)
    np.testing.assert_array_equal(got, np.stack(expected[:6]))
    np.testing.assert_array_equal(got_single, expected[6])


@pytest.mark.hw2
def test_embedded_mnist_matches_its_files():
    test_images = decode_idx_gz(EMBEDDED / "mnist/t10k-images-idx3-ubyte.gz")
    test_labels = decode_idx_gz(EMBEDDED / "mnist/t10k-labels-idx1-ubyte.gz")
    train_images = decode_idx_gz(EMBEDDED / "mnist/train-images-idx3-ubyte.gz")
    train_labels = decode_idx_gz(EMBEDDED / "mnist/train-labels-idx1-ubyte.gz")
    assert test_images.shape == (10000, 28, 28) and test_labels.shape == (10000,)
    assert train_images.shape == (10000, 28, 28) and train_labels.shape == (10000,)
    # The well-known first labels of MNIST's test and training sets.
    assert test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    for images, labels, split in (
        (test_images, test_labels, "t10k"),
        (train_images, train_labels, "train"),
    ):
        ds = ndl.data.MNISTDataset(
            EMBEDDED / f"mnist/{split}-images-idx3-ubyte.gz",
            EMBEDDED / f"mnist/{split}-labels-idx1-ubyte.gz",
        )
        assert len(ds) == 10000
        x, y = ds[[0, 9999]]
        assert x.shape == (2, 28, 28, 1) and x.dtype == np.float32
        np.testing.assert_array_equal(x[..., 0], images[[0, 9999]] / np.float32(255))
        np.testing.assert_array_equal(y, labels[[0, 9999]])


def test_embedded_fashion_mnist_and_readme_checksums():
    images = decode_idx_gz(EMBEDDED / "fashion-mnist/t10k-images-idx3-ubyte.gz")
    labels = decode_idx_gz(EMBEDDED / "fashion-mnist/t10k-labels-idx1-ubyte.gz")
    assert images.shape == (300, 28, 28) and labels.shape == (300,)
    assert labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]  # ankle boot, pullover, ...
    readme = (EMBEDDED / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| ([\d,]+) \|.*?\| `([0-9a-f]{32})` \|", readme, re.M)
    files = sorted(p for p in EMBEDDED.rglob("*") if p.is_file() and p.name != "README.md")
    assert sorted(name for name, _, _ in rows) == sorted(
        str(p.relative_to(EMBEDDED)) for p in files
    )
    for name, size, md5 in rows:
        data = (EMBEDDED / name).read_bytes()
        assert len(data) == int(size.replace(",", "")), name
        assert hashlib.md5(data).hexdigest() == md5, name
    assert sum(p.stat().st_size for p in files) < 4.5e6


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared data folder beside the repository")
def test_embedded_slices_are_prefixes_of_the_full_sets():
    for folder, split, count in (("mnist", "train", 10000), ("fashion-mnist", "t10k", 300)):
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{folder}/{split}-{kind}-ubyte.gz"
            full = decode_idx_gz(SHARED / name)
            np.testing.assert_array_equal(decode_idx_gz(EMBEDDED / name), full[:count])


# ---- transforms -----------------------------------------------------------------------------
@pytest.mark.hw2
def test_flip_horizontal_matches_replayed_draws():
    rng = np.random.default_rng(5)
    imgs = [rng.random((h, w, c)) for h, w, c in [(4, 5, 3), (7, 2, 1), (3, 3, 2)] * 4]
    flip = ndl.data.RandomFlipHorizontal(p=0.5)
    np.random.seed(0)
    got = [flip(img) for img in imgs]
    after = np.random.rand()
    np.random.seed(0)
    decisions = [np.random.rand() < 0.5 for _ in imgs]
    assert np.random.rand() == after  # exactly one draw per call
    assert any(decisions) and not all(decisions)
    for img, out, flipped in zip(imgs, got, decisions):
        np.testing.assert_array_equal(out, img[:, ::-1, :] if flipped else img)
    img = imgs[0]
    np.testing.assert_array_equal(ndl.data.RandomFlipHorizontal(p=0.0)(img), img)
    np.testing.assert_array_equal(ndl.data.RandomFlipHorizontal(p=1.0)(img), img[:, ::-1, :])


@pytest.mark.hw2
def test_random_crop_matches_replayed_draws():
    rng = np.random.default_rng(6)
    cases = [(rng.random((8 + k, 6 + k % 3, 1 + k % 3)), 1 + k % 8) for k in range(10)]
    np.random.seed(1)
    got = [ndl.data.RandomCrop(padding)(img) for img, padding in cases]
    after = np.random.rand()
    np.random.seed(1)
    for (img, padding), out in zip(cases, got):
        shift_x, shift_y = np.random.randint(-padding, padding + 1, size=2)
        assert out.shape == img.shape
        np.testing.assert_array_equal(out, crop_oracle(img, shift_x, shift_y))
    assert np.random.rand() == after  # exactly one randint call per crop


@pytest.mark.hw2
def test_random_crop_direction_and_2d_images():
    img = np.arange(20, dtype=np.float32).reshape(4, 5)
    crop = ndl.data.RandomCrop(2)
    np.random.seed(3)
    shift_x, shift_y = np.random.randint(-2, 3, size=2)
    np.random.seed(3)
    out = crop(img)
    assert (shift_x, shift_y) != (0, 0)
    np.testing.assert_array_equal(out, crop_oracle(img, shift_x, shift_y))


# ---- DataLoader ------------------------------------------------------------------------------
class CountingDataset(ndl.data.NDArrayDataset):
    """Records every index the loader asks for."""

    def __init__(self, *arrays):
        super().__init__(*arrays)
        self.requests = []

    def __getitem__(self, index):
        self.requests.append(index)
        return super().__getitem__(index)


@pytest.mark.hw2
def test_dataloader_order_and_batch_sizes_without_shuffle():
    x = np.random.default_rng(7).random((23, 3)).astype(np.float32)
    y = np.arange(23) % 10
    ds = CountingDataset(x, y)
    loader = ndl.data.DataLoader(ds, batch_size=5)
    assert len(loader) == 5
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(5, 3)] * 4 + [(3, 3)]
    for k, (xb, yb) in enumerate(batches):
        assert isinstance(xb, ndl.Tensor) and isinstance(yb, ndl.Tensor)
        assert xb.dtype == "float32" and not xb.requires_grad
        np.testing.assert_array_equal(xb.numpy(), x[5 * k : 5 * k + 5])
        np.testing.assert_array_equal(yb.numpy(), y[5 * k : 5 * k + 5])
    # One vectorised request per batch, with index arrays.
    assert len(ds.requests) == 5 and all(isinstance(r, np.ndarray) for r in ds.requests)
    # Iterating again gives the same batches.
    np.testing.assert_array_equal(next(iter(loader))[0].numpy(), x[:5])
    assert len(list(ndl.data.DataLoader(ds, batch_size=100))) == 1
    assert [b[1].shape for b in ndl.data.DataLoader(ds)][:2] == [(1,), (1,)]
    with pytest.raises(ValueError, match="batch_size"):
        ndl.data.DataLoader(ds, batch_size=0)


@pytest.mark.hw2
def test_dataloader_shuffle_draws_one_permutation_per_epoch():
    n, batch_size = 23, 4
    ds = ndl.data.NDArrayDataset(np.arange(n, dtype=np.float32)[:, None], np.arange(n))
    loader = ndl.data.DataLoader(ds, batch_size=batch_size, shuffle=True)
    np.random.seed(9)
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [len(b[1].numpy()) for b in batches] == [4, 4, 4, 4, 4, 3]
        epochs.append(np.concatenate([b[1].numpy() for b in batches]).astype(np.int64))
    after = np.random.rand()
    np.random.seed(9)
    expected = [np.random.permutation(n), np.random.permutation(n)]
    assert np.random.rand() == after
    np.testing.assert_array_equal(epochs[0], expected[0])
    np.testing.assert_array_equal(epochs[1], expected[1])
    assert not np.array_equal(epochs[0], np.arange(n))
    assert not np.array_equal(epochs[0], epochs[1])


@pytest.mark.hw2
def test_dataloader_device_and_dtype(device):
    ds = ndl.data.NDArrayDataset(np.ones((6, 2)), np.arange(6))
    xb, yb = next(iter(ndl.data.DataLoader(ds, batch_size=4, device=device)))
    assert xb.device == device and yb.device == device
    assert xb.dtype == "float32" and yb.dtype == "float32"
    default_batch = next(iter(ndl.data.DataLoader(ds, batch_size=4)))
    assert default_batch[0].device == ndl.default_device()


@pytest.mark.hw2
def test_dataloader_on_embedded_mnist_matches_dataset_slices():
    ds = ndl.data.MNISTDataset(
        EMBEDDED / "mnist/t10k-images-idx3-ubyte.gz", EMBEDDED / "mnist/t10k-labels-idx1-ubyte.gz"
    )
    loader = ndl.data.DataLoader(ds, batch_size=300)
    count = 0
    for k, (xb, yb) in enumerate(loader):
        if k in (0, 33):
            x, y = ds[300 * k : 300 * (k + 1)]
            np.testing.assert_array_equal(xb.numpy(), x)
            np.testing.assert_array_equal(yb.numpy(), y)
        count += xb.shape[0]
    assert count == 10000 and xb.shape == (100, 28, 28, 1)


# ---- CIFAR-10 --------------------------------------------------------------------------------
def write_cifar(folder: Path, per_batch: int, seed: int):
    """Pickled dicts with bytes keys, as in cifar-10-batches-py."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = (data, labels)
    return written


@pytest.mark.hw4
def test_cifar10_dataset_reads_written_batches(tmp_path):
    written = write_cifar(tmp_path, per_batch=4, seed=8)
    train = ndl.data.CIFAR10Dataset(str(tmp_path), train=True)
    test = ndl.data.CIFAR10Dataset(str(tmp_path), train=False)
    assert len(train) == 20 and len(test) == 4
    data = np.concatenate([written[f"data_batch_{k}"][0] for k in range(1, 6)])
    labels = sum((written[f"data_batch_{k}"][1] for k in range(1, 6)), [])
    image, label = train[6]
    assert image.shape == (3, 32, 32) and image.dtype == np.float32
    for c, r, col in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:  # planar: 1024 per channel, row-major
        assert image[c, r, col] == np.float32(data[6, c * 1024 + r * 32 + col]) / np.float32(255)
    assert label == labels[6]
    x, y = train[np.array([19, 0, 7])]
    assert x.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(y, np.array(labels)[[19, 0, 7]])
    np.testing.assert_array_equal(test[:][1], written["test_batch"][1])
    xb, yb = next(iter(ndl.data.DataLoader(train, batch_size=8)))
    assert xb.shape == (8, 3, 32, 32) and yb.shape == (8,)
    np.testing.assert_allclose(xb.numpy(), data[:8].reshape(8, 3, 32, 32) / 255, rtol=1e-6)


@pytest.mark.hw4
def test_cifar10_transforms_see_height_width_channels(tmp_path):
    write_cifar(tmp_path, per_batch=2, seed=9)
    plain = ndl.data.CIFAR10Dataset(tmp_path, train=False)
    flipped = ndl.data.CIFAR10Dataset(
        tmp_path, train=False, transforms=[ndl.data.RandomFlipHorizontal(p=1.0)]
    )
    np.testing.assert_array_equal(flipped[1][0], plain[1][0][:, :, ::-1])  # width is last
    np.testing.assert_array_equal(flipped[:][0], plain[:][0][:, :, :, ::-1])


class _Sneaky:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.hw4
def test_cifar10_refuses_pickles_that_call_functions(tmp_path):
    write_cifar(tmp_path, per_batch=2, seed=10)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Sneaky(), b"labels": [1]}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        ndl.data.CIFAR10Dataset(tmp_path, train=False)


# ---- Penn Treebank ---------------------------------------------------------------------------
def ids_by_first_appearance(lines: list[str]) -> tuple[list[int], dict[str, int]]:
    vocab: dict[str, int] = {}
    ids = []
    for line in lines:
        for word in line.split() + ["<eos>"]:
            ids.append(vocab.setdefault(word, len(vocab)))
    return ids, vocab


@pytest.mark.hw4
def test_dictionary():
    d = ndl.data.Dictionary()
    assert [d.add_word(w) for w in ["a", "b", "a", "c", "b"]] == [0, 1, 0, 2, 1]
    assert len(d) == 3 and d.idx2word == ["a", "b", "c"] and d.word2idx["c"] == 2


@pytest.mark.hw4
@pytest.mark.parametrize("prefix", ["", "ptb."])
def test_corpus_on_written_text(tmp_path, prefix):
    train_lines = [" the cat sat ", " on the mat", " the dog <unk> N"]
    test_lines = [" a cat ran", " the end"]
    (tmp_path / f"{prefix}train.txt").write_text("\n".join(train_lines) + "\n")
    (tmp_path / f"{prefix}test.txt").write_text("\n".join(test_lines) + "\n")
    corpus = ndl.data.Corpus(str(tmp_path))
    ids, vocab = ids_by_first_appearance(train_lines + test_lines)
    n_train = sum(len(line.split()) + 1 for line in train_lines)
    assert corpus.train == ids[:n_train] and corpus.test == ids[n_train:]
    assert corpus.dictionary.word2idx == vocab and len(corpus.dictionary) == len(vocab)
    assert corpus.train_split == "train"
    short = ndl.data.Corpus(str(tmp_path), max_lines=2)
    ids, vocab = ids_by_first_appearance(train_lines[:2] + test_lines[:2])
    assert short.train + short.test == ids and len(short.dictionary) == len(vocab)


@pytest.mark.hw4
def test_corpus_on_embedded_ptb_uses_validation_as_training():
    folder = EMBEDDED / "ptb"
    valid = (folder / "ptb.valid.txt").read_text().splitlines()
    test = (folder / "ptb.test.txt").read_text().splitlines()
    with pytest.warns(UserWarning, match="validation split"):
        corpus = ndl.data.Corpus(str(folder))
    words = {w for line in valid + test for w in line.split()} | {"<eos>"}
    assert len(corpus.dictionary) == len(words) == 7596
    assert corpus.train_split == "valid"
    assert len(corpus.train) == 73760 and len(corpus.test) == 82430  # tokens incl. <eos>
    assert corpus.dictionary.idx2word[corpus.train[0]] == valid[0].split()[0]
    assert corpus.dictionary.idx2word[corpus.test[-1]] == "<eos>"


@pytest.mark.hw4
def test_batchify_columns_are_contiguous_chunks():
    data = list(range(100, 123))  # 23 ids
    batches = ndl.data.batchify(data, batch_size=4, device=None, dtype="float32")
    assert batches.shape == (5, 4)
    for j in range(4):
        np.testing.assert_array_equal(batches[:, j], data[5 * j : 5 * j + 5])


@pytest.mark.hw4
def test_get_batch_windows_and_targets(device):
    batches = ndl.data.batchify(np.arange(2, 2 + 4 * 11), batch_size=4)  # (11, 4)
    nbatch, bptt = 11, 3
    seen = []
    for i in range(0, nbatch - 1, bptt):
        data, target = ndl.data.get_batch(batches, i, bptt, device=device, dtype="float32")
        seq_len = min(bptt, nbatch - 1 - i)
        assert data.shape == (seq_len, 4) and target.shape == (seq_len * 4,)
        assert data.device == device and target.device == device
        expected_target = [batches[i + 1 + t, b] for t in range(seq_len) for b in range(4)]
        np.testing.assert_array_equal(data.numpy(), batches[i : i + seq_len])
        np.testing.assert_array_equal(target.numpy(), expected_target)
        seen.append(seq_len)
    assert seen == [3, 3, 3, 1]
    with pytest.raises(ValueError):
        ndl.data.get_batch(batches, nbatch - 1, bptt)


# ---- locate ----------------------------------------------------------------------------------
def test_locate_prefers_needle_data_then_falls_back(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist", 3, seed=4)
    monkeypatch.setenv("NEEDLE_DATA", str(tmp_path))
    images, labels = ndl.data.mnist_paths("test")
    assert images == str(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz")
    assert images.source == labels.source == "$NEEDLE_DATA"
    assert len(ndl.data.MNISTDataset(images, labels)) == 3
    # The tmp folder has no training split: that comes from a later source.
    assert ndl.data.mnist_paths("train")[0].source != "$NEEDLE_DATA"
    assert locate.default_download_dir() == tmp_path
    monkeypatch.setattr(locate, "data_sources", lambda: [(locate.FROM_EMBEDDED, EMBEDDED)])
    assert ndl.data.mnist_paths("train")[0].source == locate.FROM_EMBEDDED
    assert ndl.data.ptb_dir() == str(EMBEDDED / "ptb")
    assert ndl.data.fashion_mnist_paths("test")[1].endswith("t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ndl.data.DataNotFoundError, match="needle.data.download cifar10"):
        ndl.data.cifar10_dir()
    with pytest.raises(ndl.data.DataNotFoundError, match="needle.data.download fashion-mnist"):
        ndl.data.fashion_mnist_paths("train")
    with pytest.raises(ValueError, match="split"):
        ndl.data.mnist_paths("validation")


def test_locate_searches_the_checkout(monkeypatch):
    monkeypatch.delenv("NEEDLE_DATA", raising=False)
    root = locate.repository_root()
    if root is None:
        pytest.skip("needle is installed from a wheel here, not run from a checkout")
    assert (root / "library" / "needle" / "data" / "locate.py").is_file()
    sources = locate.data_sources()
    assert sources[0] == (locate.FROM_BUILD, root / "build" / "data")
    assert (locate.FROM_SHARED, root.parent / "shared" / "data") in sources
    assert sources[-1] == (locate.FROM_EMBEDDED, EMBEDDED)


def test_cifar10_dir_finds_batches(tmp_path, monkeypatch):
    write_cifar(tmp_path / "cifar-10-batches-py", per_batch=1, seed=5)
    monkeypatch.setenv("NEEDLE_DATA", str(tmp_path))
    folder = ndl.data.cifar10_dir()
    assert folder.source == "$NEEDLE_DATA"
    assert len(ndl.data.CIFAR10Dataset(folder, train=True)) == 5


# ---- downloader (local HTTP server on 127.0.0.1, no network) ---------------------------------
class FakeMirror:
    """A tiny HTTP server with byte ranges, optional dropped connections and a request log."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_first: set[str] = set()  # send half of these once, then hang up
        self.requests: list[tuple[str, str | None]] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                range_header = self.headers.get("Range")
                mirror.requests.append((self.path, range_header))
                body = mirror.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(range_header[6:-1]) if range_header else 0
                self.send_response(206 if range_header else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if self.path in mirror.drop_first:
                    mirror.drop_first.discard(self.path)
                    self.wfile.write(body[start : start + (len(body) - start) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        # A watchdog so that a stuck test can never leave the server running.
        self.watchdog = threading.Timer(60, self.server.shutdown)
        self.watchdog.daemon = True

    def __enter__(self):
        self.thread.start()
        self.watchdog.start()
        return self

    def __exit__(self, *exc):
        self.watchdog.cancel()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def mirror():
    with FakeMirror() as server:
        yield server


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/file"


FAST = dict(retries=2, timeout=5, retry_delay=0, show_progress=False)


def test_fetch_verifies_gunzipped_md5_and_resumes_dropped_connections(tmp_path, mirror):
    content = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    mirror.files["/data.gz"] = gzip.compress(content)
    mirror.drop_first.add("/data.gz")
    remote = download.RemoteFile(
        "data.gz",
        (mirror.url + "/data.gz",),
        hashlib.md5(content).hexdigest(),
        gunzip_md5=True,
    )
    path = download.fetch(remote, tmp_path, **FAST)
    assert gzip.decompress(path.read_bytes()) == content
    assert not (tmp_path / "data.gz.part").exists()
    (first, no_range), (second, resume_range) = mirror.requests
    half = len(mirror.files["/data.gz"]) // 2
    assert no_range is None and resume_range == f"bytes={half}-"
    # Present with the right checksum: not fetched again.
    download.fetch(remote, tmp_path, **FAST)
    assert len(mirror.requests) == 2


def test_fetch_checksum_mismatch_removes_the_file(tmp_path, mirror):
    mirror.files["/ptb.test.txt"] = b"not what we expected\n"
    remote = download.RemoteFile("ptb.test.txt", (mirror.url + "/ptb.test.txt",), "0" * 32)
    with pytest.raises(download.ChecksumError, match="expected 0000"):
        download.fetch(remote, tmp_path, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_fetch_falls_back_to_the_next_mirror(tmp_path, mirror):
    mirror.files["/b/f.txt"] = b"payload"
    remote = download.RemoteFile(
        "f.txt",
        (mirror.url + "/a/f.txt", mirror.url + "/b/f.txt"),
        hashlib.md5(b"payload").hexdigest(),
    )
    assert download.fetch(remote, tmp_path, **FAST).read_bytes() == b"payload"
    assert [path for path, _ in mirror.requests] == ["/a/f.txt", "/b/f.txt"]


def test_fetch_offline_is_one_clear_error(tmp_path):
    remote = download.RemoteFile("f.txt", (closed_port_url(),), "0" * 32)
    with pytest.raises(download.OfflineError, match="network"):
        download.fetch(remote, tmp_path, **FAST)
    assert not (tmp_path / "f.txt").exists()


def make_tar(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buffer.getvalue()


def test_download_unpacks_and_verifies_an_archive(tmp_path, mirror):
    members = {"set/part_1": b"first", "set/part_2": b"second"}
    mirror.files["/set.tar.gz"] = archive = make_tar(members)
    spec = download.DataSetSpec(
        "set",
        "",
        (
            download.RemoteFile(
                "set.tar.gz", (mirror.url + "/set.tar.gz",), hashlib.md5(archive).hexdigest()
            ),
        ),
        archive_members={name: hashlib.md5(data).hexdigest() for name, data in members.items()},
    )
    folder = download.download(spec, tmp_path, **FAST)
    assert folder == tmp_path
    assert (tmp_path / "set/part_2").read_bytes() == b"second"
    assert not (tmp_path / "set.tar.gz").exists()  # archive removed after unpacking
    download.download(spec, tmp_path, **FAST)  # already complete: no new request
    assert len(mirror.requests) == 1


@pytest.mark.parametrize(
    "entries, symlink",
    [({"../escape.txt": b"x"}, None), ({"/tmp/abs.txt": b"x"}, None), ({"ok.txt": b"x"}, "link")],
)
def test_safe_extract_refuses_escaping_entries(tmp_path, entries, symlink):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(make_tar(entries, symlink))
    with pytest.raises(download.DownloadError, match="refusing"):
        download.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()


def test_cli_success_and_offline_messages(tmp_path, mirror, monkeypatch, capsys):
    text = b" a b c\n"
    mirror.files["/ptb.test.txt"] = text
    spec = download.DataSetSpec(
        "ptb",
        "ptb",
        (
            download.RemoteFile(
                "ptb.test.txt", (mirror.url + "/ptb.test.txt",), hashlib.md5(text).hexdigest()
            ),
        ),
    )
    monkeypatch.setitem(download.DATASETS, "ptb", spec)
    assert download.main(["ptb", "--dir", str(tmp_path), "--quiet", "--retries", "0"]) == 0
    out = capsys.readouterr().out
    assert "ptb: ready in" in out and "NEEDLE_DATA" in out
    assert (tmp_path / "ptb" / "ptb.test.txt").read_bytes() == text
    offline = download.DataSetSpec(
        "ptb", "ptb", (download.RemoteFile("ptb.valid.txt", (closed_port_url(),), "0" * 32),)
    )
    monkeypatch.setitem(download.DATASETS, "ptb", offline)
    assert download.main(["ptb", "--dir", str(tmp_path), "--quiet", "--retries", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "could not download ptb" in err and "network" in err
    with pytest.raises(SystemExit):
        download.main(["imagenet"])
