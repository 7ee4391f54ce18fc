"""Train the course's models end to end (used by ``make train-*`` and ``make demo``).

Tasks::

    python library/apps/train.py demo             # MLPResNet, embedded MNIST sample, ~minutes
    python library/apps/train.py mlp-mnist        # MLPResNet on full MNIST      (>= 97.5% test)
    python library/apps/train.py resnet9-fashion  # ResNet9 on Fashion-MNIST     (>= 90% test)
    python library/apps/train.py lstm-ptb         # LSTM language model on PTB   (vs unigram)

Fashion-MNIST stands in for CIFAR-10 offline: each 28x28 grey image is zero-padded to 32x32
and repeated over 3 channels, so ResNet9 runs unchanged. The PTB task trains on the validation
split (the training split is not available offline) and reports test perplexity next to the
perplexity of a unigram model with add-one smoothing estimated on the same training text.

Every epoch prints its loss, accuracy and time; ``--plot`` writes loss/accuracy curves (needs
matplotlib) and ``--save`` the trained weights as ``.npz``. Data come from
``needle.data.locate`` (``$NEEDLE_DATA``, ``build/data``, ``../shared/data``, embedded samples).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import needle as ndl
import needle.nn as nn
import numpy as np

# ``library/apps`` is imported as the package ``apps`` (as the homeworks do), so that its
# ``simple_ml`` never collides with hw0's module of the same name.
if __package__ in (None, ""):
    LIBRARY = str(Path(__file__).resolve().parents[1])
    if LIBRARY not in sys.path:
        sys.path.append(LIBRARY)

from apps import mlp_resnet, models, simple_ml  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
# Progress bars (in a log file: one update every 30 seconds).
PROGRESS = True
OUTPUT_DIR = REPO_ROOT / "build" / "train"


@dataclass
class History:
    """Per-epoch metrics, printed as they come and plotted at the end."""

    task: str
    accuracy_name: str = "accuracy"
    rows: list = field(default_factory=list)

    def add(self, epoch, seconds, train_loss, train_acc, test_loss, test_acc, **extra):
        row = dict(
            epoch=epoch,
            seconds=seconds,
            train_loss=train_loss,
            train_acc=train_acc,
            test_loss=test_loss,
            test_acc=test_acc,
            **extra,
        )
        self.rows.append(row)
        extras = "".join(f"  {name} {value:.2f}" for name, value in extra.items())
        print(
            f"epoch {epoch:2d}  {seconds:7.1f} s  train loss {train_loss:.4f} "
            f"acc {train_acc:.4f}  test loss {test_loss:.4f} acc {test_acc:.4f}{extras}",
            flush=True,
        )

    def plot(self, path: Path) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: skipping the curve plot (pip install matplotlib)")
            return
        epochs = [r["epoch"] for r in self.rows]
        figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 4))
        for split in ("train", "test"):
            loss_axes.plot(epochs, [r[f"{split}_loss"] for r in self.rows], "o-", label=split)
            acc_axes.plot(epochs, [r[f"{split}_acc"] for r in self.rows], "o-", label=split)
        loss_axes.set(xlabel="epoch", ylabel="loss", title=f"{self.task}: loss")
        acc_axes.set(xlabel="epoch", ylabel=self.accuracy_name, title=f"{self.task}: accuracy")
        for axes in (loss_axes, acc_axes):
            axes.grid(alpha=0.3)
            axes.legend()
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        plt.close(figure)
        print(f"curves: {path}")


class FreshEachEpoch:
    """A DataLoader whose shuffle and augmentations change from epoch to epoch.

    The course's epoch functions start with ``np.random.seed(4)`` (so graded runs are
    reproducible), which would replay the same shuffle and the same random shifts every epoch.
    This wrapper reseeds numpy with ``seed + epoch`` when each epoch's iteration starts, so runs
    stay reproducible but every epoch sees new batches.
    """

    def __init__(self, loader, seed: int):
        self.loader = loader
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.epoch += 1
        np.random.seed(self.seed + self.epoch)
        return iter(self.loader)


def pick_device(name: str | None):
    """``cpu`` (C++, falling back to the numpy reference backend if not built), ``cuda``,
    ``cpu_numpy``."""
    if name in (None, "cpu"):
        device = ndl.cpu()
        if not device.enabled():
            print("the C++ cpu backend is not built; using cpu_numpy (slow)")
            return ndl.cpu_numpy()
        return device
    if name == "cuda":
        device = ndl.cuda()
        if not device.enabled():
            raise SystemExit("no CUDA device here; use --device cpu")
        return device
    if name == "cpu_numpy":
        return ndl.cpu_numpy()
    raise SystemExit(f"unknown device {name!r}: cpu, cuda or cpu_numpy")


def describe_source(path) -> str:
    return getattr(path, "source", "given path")


# ---- MLPResNet on MNIST --------------------------------------------------------------------


def train_mlp(args, device, train_files, test_files, history: History) -> float:
    print(f"MNIST train: {train_files[0]} ({describe_source(train_files[0])})")
    # Shifting digits by up to 2 pixels is a cheap augmentation that fights overfitting.
    augment = [ndl.data.RandomCrop(padding=2)] if args.augment else None
    train_set = ndl.data.MNISTDataset(*train_files, transforms=augment)
    test_set = ndl.data.MNISTDataset(*test_files)
    print(f"{len(train_set)} training / {len(test_set)} test images, device {device}")
    np.random.seed(args.seed)
    train_loader = FreshEachEpoch(
        ndl.data.DataLoader(train_set, args.batch_size, shuffle=True, device=device), args.seed
    )
    test_loader = ndl.data.DataLoader(test_set, 500, device=device)
    model = mlp_resnet.MLPResNet(784, args.hidden, device=device)
    print(f"MLPResNet(784, hidden_dim={args.hidden}): {model.num_parameters():,} parameters")
    opt = ndl.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = ndl.optim.CosineLR(opt, total_epochs=args.epochs)
    test_error = 1.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        train_error, train_loss = mlp_resnet.epoch(train_loader, model, opt, progress=PROGRESS)
        seconds = time.perf_counter() - start
        test_error, test_loss = mlp_resnet.epoch(test_loader, model, progress=PROGRESS)
        history.add(epoch, seconds, train_loss, 1 - train_error, test_loss, 1 - test_error)
        schedule.step()
    save_model(args, model)
    return 1 - test_error


def run_mlp_mnist(args, device, history):
    accuracy = train_mlp(
        args, device, ndl.data.mnist_paths("train"), ndl.data.mnist_paths("test"), history
    )
    return f"MLPResNet test accuracy {accuracy:.4f} (target >= 0.975)"


def run_demo(args, device, history):
    embedded = Path(ndl.data.__file__).parent / "embedded" / "mnist"
    train_files = (
        embedded / "train-images-idx3-ubyte.gz",
        embedded / "train-labels-idx1-ubyte.gz",
    )
    test_files = (embedded / "t10k-images-idx3-ubyte.gz", embedded / "t10k-labels-idx1-ubyte.gz")
    accuracy = train_mlp(args, device, train_files, test_files, history)
    return (
        f"demo: MLPResNet trained on the embedded 10,000-image MNIST sample, "
        f"test accuracy {accuracy:.4f} on the 10,000 test images (target >= 0.95)"
    )


# ---- ResNet9 on Fashion-MNIST --------------------------------------------------------------


class GreyToColour32(ndl.data.Dataset):
    """An MNIST-format data set seen as CIFAR-10-shaped images: ``(3, 32, 32)`` float32,
    the 28x28 image zero-padded by 2 on each side and repeated over 3 channels. With
    ``flip``, training images are mirrored left-right with probability 1/2."""

    def __init__(self, image_file, label_file, flip=False):
        super().__init__()
        self.source = ndl.data.MNISTDataset(image_file, label_file)
        self.flip = flip

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        images, labels = self.source[index]  # (k, 28, 28, 1)
        single = images.ndim == 3
        images = images[None] if single else images
        images = np.pad(images[..., 0], ((0, 0), (2, 2), (2, 2)))
        if self.flip:
            mirror = np.random.rand(images.shape[0]) < 0.5
            images[mirror] = images[mirror, :, ::-1]
        images = np.repeat(images[:, None], 3, axis=1)
        return (images[0] if single else images), labels


def run_resnet9_fashion(args, device, history):
    train_files = ndl.data.fashion_mnist_paths("train")
    test_files = ndl.data.fashion_mnist_paths("test")
    print(f"Fashion-MNIST: {train_files[0]} ({describe_source(train_files[0])})")
    np.random.seed(args.seed)
    train_set = GreyToColour32(*train_files, flip=args.augment)
    test_set = GreyToColour32(*test_files)
    train_loader = FreshEachEpoch(
        ndl.data.DataLoader(train_set, args.batch_size, shuffle=True, device=device), args.seed
    )
    test_loader = ndl.data.DataLoader(test_set, 500, device=device)
    model = models.ResNet9(device=device)
    print(f"ResNet9: {model.num_parameters():,} parameters, device {device}")
    opt = ndl.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = ndl.optim.CosineLR(opt, total_epochs=args.epochs)
    loss_fn = nn.SoftmaxLoss()
    test_acc = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        train_acc, train_loss = simple_ml.epoch_general_cifar10(
            train_loader, model, loss_fn, opt, progress=PROGRESS
        )
        seconds = time.perf_counter() - start
        test_acc, test_loss = simple_ml.epoch_general_cifar10(
            test_loader, model, loss_fn, progress=PROGRESS
        )
        history.add(epoch, seconds, train_loss, train_acc, test_loss, test_acc)
        schedule.step()
    save_model(args, model)
    return f"ResNet9 Fashion-MNIST test accuracy {test_acc:.4f} (target >= 0.90)"


# ---- LSTM language model on Penn Treebank --------------------------------------------------


def unigram_cross_entropy(train_ids, target_ids, vocabulary_size):
    """Cross-entropy (nats/token) on ``target_ids`` of the add-one-smoothed unigram model
    estimated on ``train_ids``."""
    counts = np.bincount(np.asarray(train_ids), minlength=vocabulary_size).astype(np.float64)
    probabilities = (counts + 1) / (counts.sum() + vocabulary_size)
    return float(-np.mean(np.log(probabilities[np.asarray(target_ids)])))


def run_lstm_ptb(args, device, history):
    folder = ndl.data.ptb_dir()
    print(f"Penn Treebank: {folder} ({describe_source(folder)})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the validation split standing in for train is expected
        corpus = ndl.data.Corpus(folder)
    vocabulary = len(corpus.dictionary)
    print(
        f"training on the {corpus.train_split} split ({len(corpus.train):,} tokens), testing on "
        f"the test split ({len(corpus.test):,} tokens), vocabulary {vocabulary:,}"
    )
    train_data = ndl.data.batchify(corpus.train, args.batch_size)
    test_data = ndl.data.batchify(corpus.test, args.batch_size)
    baseline = unigram_cross_entropy(corpus.train, test_data[1:].reshape(-1), vocabulary)
    print(f"unigram baseline: test perplexity {math.exp(baseline):.1f}")
    np.random.seed(args.seed)
    model = models.LanguageModel(
        args.embedding,
        vocabulary,
        args.hidden,
        num_layers=args.layers,
        seq_model="lstm",
        device=device,
    )
    print(f"{model.num_parameters():,} parameters, device {device}")
    opt = ndl.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = ndl.optim.CosineLR(opt, total_epochs=args.epochs)
    loss_fn = nn.SoftmaxLoss()
    test_loss = baseline
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        train_acc, train_loss = simple_ml.epoch_general_ptb(
            train_data,
            model,
            args.seq_len,
            loss_fn,
            opt,
            clip=args.clip,
            device=device,
            progress=PROGRESS,
        )
        seconds = time.perf_counter() - start
        test_acc, test_loss = simple_ml.evaluate_ptb(
            model, test_data, args.seq_len, device=device, progress=PROGRESS
        )
        history.add(
            epoch,
            seconds,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            test_ppl=math.exp(test_loss),
        )
        schedule.step()
    save_model(args, model)
    return f"LSTM LM test perplexity {math.exp(test_loss):.1f} vs unigram {math.exp(baseline):.1f}"


# ---- command line --------------------------------------------------------------------------

TASKS = {
    # name: (runner, defaults)
    "demo": (
        run_demo,
        dict(epochs=6, batch_size=100, lr=3e-3, weight_decay=1e-3, hidden=200, augment=True),
    ),
    "mlp-mnist": (
        run_mlp_mnist,
        dict(epochs=10, batch_size=100, lr=2e-3, weight_decay=1e-3, hidden=200, augment=True),
    ),
    "resnet9-fashion": (
        run_resnet9_fashion,
        dict(epochs=15, batch_size=128, lr=2e-3, weight_decay=1e-4, augment=True),
    ),
    "lstm-ptb": (
        run_lstm_ptb,
        dict(
            epochs=6,
            batch_size=16,
            lr=3e-3,
            weight_decay=0.0,
            hidden=128,
            embedding=128,
            layers=1,
            seq_len=35,
            clip=0.5,
        ),
    ),
}


def save_model(args, model):
    if args.save == "":
        return
    path = Path(args.save) if args.save else OUTPUT_DIR / f"{args.task}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    print(f"weights: {path}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train needle-course models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(f"  {name}" for name in TASKS),
    )
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--device", default=None, help="cpu (default), cuda or cpu_numpy")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--hidden", type=int, help="hidden size (MLP, LSTM)")
    parser.add_argument("--embedding", type=int, help="word vector size (LSTM)")
    parser.add_argument("--layers", type=int, help="LSTM layers")
    parser.add_argument("--seq-len", type=int, help="BPTT window (LSTM)")
    parser.add_argument("--clip", type=float, help="max gradient norm (LSTM)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random shifts of the training images (MLP tasks)",
    )
    parser.add_argument(
        "--plot", default=None, help="curve PNG (default build/train/TASK.png; '' for none)"
    )
    parser.add_argument(
        "--save", default=None, help="weights .npz (default build/train/TASK.npz; '' for none)"
    )
    args = parser.parse_args(argv)
    for name, value in TASKS[args.task][1].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    device = pick_device(args.device)
    runner = TASKS[args.task][0]
    history = History(args.task)
    started = time.perf_counter()
    summary = runner(args, device, history)
    total = time.perf_counter() - started
    if args.plot != "":
        history.plot(Path(args.plot) if args.plot else OUTPUT_DIR / f"{args.task}.png")
    per_epoch = np.mean([row["seconds"] for row in history.rows]) if history.rows else 0.0
    print(f"{summary}; {per_epoch:.1f} s per training epoch, {total:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
