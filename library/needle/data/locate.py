"""Where needle's data sets live on this machine.

Every loader takes explicit paths, so nothing here is magic: these helpers only answer "which
files should I pass?". They look in these places, in order, and take the first one that has the
complete files for what was asked:

1. ``$NEEDLE_DATA`` — a folder you choose (the downloader writes there too when it is set);
2. ``build/data`` of the repository — where ``python -m needle.data.download`` writes by default;
3. ``../shared/data`` beside the repository — the course machines' read-only copy of the full sets;
4. the samples embedded in the package (``needle/data/embedded``): real files, but only a part of
   each set (see ``embedded/README.md``), so that demos and tests work offline.

Every folder uses the same layout::

    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    fashion-mnist/   (same four names)
    ptb/ptb.{train,valid,test}.txt          (or train.txt, valid.txt, test.txt)
    cifar-10-batches-py/{data_batch_1..5, test_batch}

The returned paths are plain ``str``s that also carry ``.source`` (which of the places above they
came from), so ``MNISTDataset(*mnist_paths("train"))`` works and ``paths[0].source`` tells you
whether you are training on the full set or on the embedded sample.

Run ``python -m needle.data.locate`` to see what would be used for each set.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger("needle.data")

PACKAGE_DIR = Path(__file__).resolve().parent
EMBEDDED_DIR = PACKAGE_DIR / "embedded"

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = tuple(f"data_batch_{k}" for k in range(1, 6)) + ("test_batch",)

# Source names, as reported in ``DataPath.source``.
FROM_ENV = "$NEEDLE_DATA"
FROM_BUILD = "build/data (downloaded)"
FROM_SHARED = "shared data folder"
FROM_EMBEDDED = "embedded sample"


class DataNotFoundError(FileNotFoundError):
    """No folder this machine knows of has the requested data set."""


class DataPath(str):
    """A path (a plain ``str``, usable anywhere a path is) that remembers where it was found.

    Attributes:
        source: one of ``"$NEEDLE_DATA"``, ``"build/data (downloaded)"``, ``"shared data folder"``,
            ``"embedded sample"``.
    """

    source: str

    def __new__(cls, path: os.PathLike | str, source: str) -> DataPath:
        located = super().__new__(cls, os.fspath(path))
        located.source = source
        return located


def repository_root() -> Path | None:
    """The checkout that holds this package (``<root>/library/needle``), or None when installed."""
    root = PACKAGE_DIR.parents[2]
    if (root / "library" / "needle").resolve() == PACKAGE_DIR.parent:
        return root
    return None


def default_download_dir() -> Path:
    """Where the downloader writes when not told: ``$NEEDLE_DATA``, else ``build/data``.

    ``build/data`` is inside the repository when needle runs from a checkout, else inside the
    current working directory.
    """
    if os.environ.get("NEEDLE_DATA"):
        return Path(os.environ["NEEDLE_DATA"]).expanduser()
    root = repository_root()
    return (root if root is not None else Path.cwd()) / "build" / "data"


def data_sources() -> list[tuple[str, Path]]:
    """The folders searched, first match wins: ``[(source name, folder), ...]``."""
    sources = []
    if os.environ.get("NEEDLE_DATA"):
        sources.append((FROM_ENV, Path(os.environ["NEEDLE_DATA"]).expanduser()))
    root = repository_root()
    sources.append((FROM_BUILD, (root if root is not None else Path.cwd()) / "build" / "data"))
    if root is not None:
        sources.append((FROM_SHARED, root.parent / "shared" / "data"))
    sources.append((FROM_EMBEDDED, EMBEDDED_DIR))
    return sources


def _find(what: str, subfolder: str, alternatives: list[tuple[str, ...]], download_name: str):
    """First source folder ``<source>/<subfolder>`` holding every file of one alternative.

    Returns ``(folder, names, source)``; raises DataNotFoundError naming the downloader.
    """
    searched = []
    for source, base in data_sources():
        folder = base / subfolder
        searched.append(f"  {folder}  ({source})")
        for names in alternatives:
            if all((folder / name).is_file() for name in names):
                logger.info("%s: using %s (%s)", what, folder, source)
                return folder, names, source
    wanted = ", ".join(alternatives[0]) if alternatives[0] else "the folder"
    raise DataNotFoundError(
        f"{what} not found (looked for {wanted} in:\n"
        + "\n".join(searched)
        + f"\n). Fetch it with `python -m needle.data.download {download_name}`, "
        "or set NEEDLE_DATA to a folder that has it."
    )


def _idx_paths(dataset: str, split: str, what: str) -> tuple[DataPath, DataPath]:
    if split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder, names, source = _find(f"{what} {split}", dataset, [MNIST_FILES[split]], dataset)
    images, labels = (DataPath(folder / name, source) for name in names)
    return images, labels


def mnist_paths(split: str = "train") -> tuple[DataPath, DataPath]:
    """``(images_path, labels_path)`` of MNIST's ``"train"`` or ``"test"`` split.

    Without the full set on this machine, "train" is the embedded first 10,000 of the 60,000
    training images and "test" the complete 10,000-image test set (``.source`` says which).

    Example:
        >>> train = ndl.data.MNISTDataset(*ndl.data.mnist_paths("train"))
    """
    return _idx_paths("mnist", split, "MNIST")


def fashion_mnist_paths(split: str = "train") -> tuple[DataPath, DataPath]:
    """``(images_path, labels_path)`` of Fashion-MNIST's ``"train"`` or ``"test"`` split.

    The embedded sample has only the first 300 test images; "train" needs the full set.
    """
    return _idx_paths("fashion-mnist", split, "Fashion-MNIST")


def ptb_dir() -> DataPath:
    """The folder holding Penn Treebank text (``Corpus(ptb_dir())``).

    A folder qualifies when it has at least the test split; the embedded sample and the shared
    folder have the validation and test splits only, which ``Corpus`` then uses in place of the
    (missing) training split.
    """
    splits = [
        ("ptb.train.txt", "ptb.test.txt"),
        ("train.txt", "test.txt"),
        ("ptb.test.txt",),
        ("test.txt",),
    ]
    folder, _, source = _find("Penn Treebank", "ptb", splits, "ptb")
    return DataPath(folder, source)


def cifar10_dir() -> DataPath:
    """The ``cifar-10-batches-py`` folder (``CIFAR10Dataset(cifar10_dir(), train=True)``)."""
    folder, _, source = _find("CIFAR-10", CIFAR10_FOLDER, [CIFAR10_FILES], "cifar10")
    return DataPath(folder, source)


def describe() -> str:
    """One line per data set: where it would be loaded from, or that it is missing."""
    lines = ["searched, in order:"]
    lines += [f"  {source:<26} {folder}" for source, folder in data_sources()]
    lookups = [
        ("mnist train", lambda: mnist_paths("train")[0]),
        ("mnist test", lambda: mnist_paths("test")[0]),
        ("fashion-mnist train", lambda: fashion_mnist_paths("train")[0]),
        ("fashion-mnist test", lambda: fashion_mnist_paths("test")[0]),
        ("ptb", ptb_dir),
        ("cifar10", cifar10_dir),
    ]
    for name, lookup in lookups:
        try:
            path = lookup()
            lines.append(f"{name:<20} {path.source:<26} {path}")
        except DataNotFoundError:
            lines.append(
                f"{name:<20} {'missing':<26} python -m needle.data.download {name.split()[0]}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
