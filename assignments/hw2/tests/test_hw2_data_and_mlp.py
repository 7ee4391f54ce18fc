"""Public tests of hw2, part 2: transforms, MNISTDataset, DataLoader and the MLPResNet.

Run them with ``make check`` or e.g. ``python -m pytest tests -k dataloader``.
"""

from __future__ import annotations

import needle as ndl
import numpy as np
import pytest
from hw2_support import (
    assert_close,
    embedded_mnist_dir,
    mlp_numpy,
    rand,
    read_idx_oracle,
    residual_block_numpy,
    small_mnist,
    softmax_loss_np,
    tensor,
)

pytestmark = pytest.mark.hw2


def mlp_resnet():
    from apps import mlp_resnet as module  # imported here: a broken file fails only its tests

    return module


# ---------------------------------------------------------------------------------------------
# Question 4a: transforms. Each draws from numpy's global RNG exactly as documented.


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_flip_horizontal(p):
    np.random.seed(0)
    images = [np.random.rand(6, 7, 3).astype(np.float32) for _ in range(10)]
    transform = ndl.data.RandomFlipHorizontal(p)
    np.random.seed(1)
    got = [transform(image) for image in images]
    np.random.seed(1)
    for image, result in zip(images, got):
        flip = np.random.rand() < p
        expected = image[:, ::-1, :] if flip else image
        assert_close(
            result,
            expected,
            rtol=0,
            atol=0,
            what="flip the width axis (axis 1) when np.random.rand() < p",
        )


@pytest.mark.parametrize("padding", [1, 3, 8])
def test_random_crop(padding):
    np.random.seed(0)
    images = [np.random.rand(9, 8, 2).astype(np.float32) for _ in range(10)]
    transform = ndl.data.RandomCrop(padding)
    np.random.seed(2)
    got = [transform(image) for image in images]
    np.random.seed(2)
    for image, result in zip(images, got):
        shift_x, shift_y = np.random.randint(-padding, padding + 1, size=2)
        expected = np.zeros_like(image)
        for i in range(image.shape[0]):
            for j in range(image.shape[1]):
                if 0 <= i + shift_x < image.shape[0] and 0 <= j + shift_y < image.shape[1]:
                    expected[i, j] = image[i + shift_x, j + shift_y]
        assert_close(
            result,
            expected,
            rtol=0,
            atol=0,
            what=f"out[i, j] = img[i + {shift_x}, j + {shift_y}] (0 outside the image)",
        )


# ---------------------------------------------------------------------------------------------
# Question 4b: MNISTDataset and DataLoader


@pytest.fixture(scope="module")
def mnist_files():
    folder = embedded_mnist_dir()
    images, labels = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
    return str(images), str(labels), read_idx_oracle(images), read_idx_oracle(labels)


def test_mnist_dataset_items(mnist_files):
    images, labels, raw_images, raw_labels = mnist_files
    dataset = ndl.data.MNISTDataset(images, labels)
    assert len(dataset) == raw_labels.shape[0]
    for index in (0, 17, 9999):
        image, label = dataset[index]
        assert image.shape == (28, 28, 1), f"an image is 28 x 28 x 1, got {image.shape}"
        assert image.dtype == np.float32
        assert_close(
            image,
            raw_images[index][..., None] / 255.0,
            rtol=1e-6,
            atol=1e-7,
            what=f"image {index} = pixels / 255",
        )
        assert int(label) == raw_labels[index]


def test_mnist_dataset_slices_and_index_arrays(mnist_files):
    images, labels, raw_images, raw_labels = mnist_files
    dataset = ndl.data.MNISTDataset(images, labels)
    batch, batch_labels = dataset[5:9]
    assert batch.shape == (4, 28, 28, 1), f"dataset[5:9] gives 4 images, got {batch.shape}"
    np.testing.assert_array_equal(batch_labels, raw_labels[5:9])
    picked, picked_labels = dataset[np.array([3, 1, 4])]
    assert_close(picked, raw_images[[3, 1, 4]][..., None] / 255.0, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(picked_labels, raw_labels[[3, 1, 4]])


def test_mnist_dataset_transforms(mnist_files):
    images, labels, raw_images, _ = mnist_files
    dataset = ndl.data.MNISTDataset(images, labels, transforms=[ndl.data.RandomFlipHorizontal(1.0)])
    image, _ = dataset[3]
    assert_close(
        image,
        raw_images[3][:, ::-1, None] / 255.0,
        rtol=1e-6,
        atol=1e-7,
        what="transforms apply to each 28 x 28 x 1 image",
    )


def test_dataloader_batches_in_order():
    X = rand(23, 4)
    y = np.arange(23, dtype=np.float32)
    loader = ndl.data.DataLoader(ndl.data.NDArrayDataset(X, y), batch_size=5)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [5, 5, 5, 5, 3], "the last batch may be smaller"
    for k, (xb, yb) in enumerate(batches):
        assert isinstance(xb, ndl.Tensor) and isinstance(yb, ndl.Tensor), "batches are Tensors"
        assert_close(xb, X[5 * k : 5 * k + 5], what=f"batch {k}")
        assert_close(yb, y[5 * k : 5 * k + 5], what=f"labels of batch {k}")
    assert len(list(loader)) == 5, "iterating again starts a new epoch"


def test_dataloader_shuffle():
    X = rand(20, 3)
    loader = ndl.data.DataLoader(ndl.data.NDArrayDataset(X), batch_size=6, shuffle=True)
    np.random.seed(0)
    first = np.concatenate([b[0].numpy() for b in loader])
    np.random.seed(0)
    order = np.random.permutation(20)
    assert_close(first, X[order], what="shuffle with one np.random.permutation(N) per epoch")
    second = np.concatenate([b[0].numpy() for b in loader])
    assert not np.allclose(first, second), "each epoch (each iter()) draws a new order"
    assert_close(np.sort(second, axis=0), np.sort(X, axis=0), what="every example once")


def test_dataloader_mnist(mnist_files):
    images, labels, raw_images, raw_labels = mnist_files
    loader = ndl.data.DataLoader(ndl.data.MNISTDataset(images, labels), batch_size=32)
    xb, yb = next(iter(loader))
    assert xb.shape == (32, 28, 28, 1) and yb.shape == (32,)
    assert_close(xb, raw_images[:32][..., None] / 255.0, rtol=1e-6, atol=1e-7)
    assert_close(yb, raw_labels[:32].astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Question 5: MLPResNet


def mlp_resnet_parameter_count(dim, hidden, blocks, classes):
    linear = lambda i, o: i * o + o  # noqa: E731
    block = linear(hidden, hidden // 2) + 2 * (hidden // 2) + linear(hidden // 2, hidden)
    block += 2 * hidden
    return linear(dim, hidden) + blocks * block + linear(hidden, classes)


def test_mlp_resnet_residual_block():
    np.random.seed(4)
    block = mlp_resnet().ResidualBlock(10, 6, drop_prob=0.0)
    params = block.parameters()
    shapes = [tuple(p.shape) for p in params]
    assert len(params) == 8, f"two Linear layers and two norms: 8 parameters, got {shapes}"
    assert shapes[0] == (10, 6) and shapes[4] == (6, 10), f"parameter shapes: {shapes}"
    x = rand(7, 10)
    expected = residual_block_numpy(x.astype(np.float64), [p.numpy() for p in params])
    assert_close(
        block(tensor(x)),
        expected,
        rtol=1e-4,
        atol=1e-4,
        what="ReLU(x + norm(Linear(Dropout(ReLU(norm(Linear(x)))))))",
    )


def test_mlp_resnet_structure_and_forward():
    np.random.seed(4)
    model = mlp_resnet().MLPResNet(12, hidden_dim=8, num_blocks=2, num_classes=5, drop_prob=0.0)
    count = sum(p.numpy().size for p in model.parameters())
    assert count == mlp_resnet_parameter_count(12, 8, 2, 5), f"parameter count {count}"
    x = rand(9, 12)
    assert_close(
        model(tensor(x)),
        mlp_numpy(x.astype(np.float64), model.parameters(), 2),
        rtol=1e-4,
        atol=1e-4,
        what="MLPResNet forward (training mode, no dropout)",
    )


def toy_problem(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2, 2, 1)).astype(np.float32)  # epoch flattens the images
    y = (X.reshape(n, 4).sum(axis=1) > 0).astype(np.float32)
    return X, y


def test_mlp_resnet_epoch_eval():
    X, y = toy_problem()
    np.random.seed(0)
    model = mlp_resnet().MLPResNet(4, hidden_dim=6, num_blocks=1, num_classes=2)
    model.train()
    loader = ndl.data.DataLoader(ndl.data.NDArrayDataset(X, y), batch_size=25)
    error, loss = mlp_resnet().epoch(loader, model)
    assert not model.training, "epoch without an optimizer must put the model in eval mode"
    logits = model(tensor(X.reshape(60, 4), requires_grad=False)).numpy().astype(np.float64)
    labels = y.astype(int)
    assert error == pytest.approx(np.mean(logits.argmax(axis=1) != labels), abs=1e-6), (
        "epoch returns the error rate (fraction misclassified), not the accuracy"
    )
    sizes = [25, 25, 10]
    per_batch = [
        softmax_loss_np(logits[25 * k : 25 * k + s], labels[25 * k : 25 * k + s])
        for k, s in enumerate(sizes)
    ]
    assert loss == pytest.approx(np.dot(per_batch, sizes) / 60, rel=1e-4), (
        "the loss is averaged over samples"
    )


def test_mlp_resnet_epoch_train():
    X, y = toy_problem()
    np.random.seed(0)
    model = mlp_resnet().MLPResNet(4, hidden_dim=16, num_blocks=1, num_classes=2, drop_prob=0.0)
    model.eval()
    loader = ndl.data.DataLoader(ndl.data.NDArrayDataset(X, y), batch_size=20, shuffle=True)
    opt = ndl.optim.Adam(model.parameters(), lr=0.05)
    first_error, first_loss = mlp_resnet().epoch(loader, model, opt)
    assert model.training, "epoch with an optimizer must put the model in training mode"
    for _ in range(5):
        error, loss = mlp_resnet().epoch(loader, model, opt)
    assert loss < first_loss, f"training should lower the loss: {first_loss:.3f} -> {loss:.3f}"


def test_mlp_resnet_train_mnist(tmp_path):
    folder = small_mnist(tmp_path, train=300, test=100)
    result = mlp_resnet().train_mnist(
        batch_size=50,
        epochs=3,
        optimizer=ndl.optim.Adam,
        lr=0.01,
        hidden_dim=32,
        data_dir=str(folder),
    )
    assert len(result) == 4, "train_mnist returns (train_error, train_loss, test_error, test_loss)"
    train_error, train_loss, test_error, test_loss = map(float, result)
    for value in (train_error, test_error):
        assert 0.0 <= value <= 1.0, f"error rates lie in [0, 1], got {value}"
    assert test_error < 0.6, f"3 epochs on 300 images should beat chance by far: {test_error:.2f}"
    assert np.isfinite(train_loss) and np.isfinite(test_loss)
