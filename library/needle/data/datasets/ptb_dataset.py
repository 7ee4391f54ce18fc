"""The Penn Treebank word-level corpus (Mikolov's preprocessed text) for language modelling.

The text has one sentence per line, lower-case, space-separated words, numbers replaced by
``N`` and rare words by ``<unk>`` (a 10,000-word vocabulary). Words become integer ids, each
line ends with an ``<eos>`` token, and the id stream is cut into columns (``batchify``) from
which ``get_batch`` takes ``(input, next-word target)`` windows for truncated backpropagation
through time.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from ...autograd import Tensor
from ...backend_selection import default_device

END_OF_SENTENCE = "<eos>"


class Dictionary:
    """A two-way map between words and consecutive integer ids, in order of first appearance.

    Attributes:
        word2idx: ``{word: id}``.
        idx2word: ``[word, ...]`` so that ``idx2word[word2idx[w]] == w``.
    """

    def __init__(self):
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add_word(self, word: str) -> int:
        """Return ``word``'s id, giving it the next free id if it is new."""
        ### BEGIN YOUR SOLUTION (hw4)
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]
        ### END YOUR SOLUTION

    def __len__(self) -> int:
        """Number of distinct words seen."""
        ### BEGIN YOUR SOLUTION (hw4)
        return len(self.idx2word)
        ### END YOUR SOLUTION


def _split_file(base_dir: str, split: str) -> str | None:
    """``base_dir/<split>.txt`` (the course's names) or ``base_dir/ptb.<split>.txt`` (the
    distributed names), whichever exists."""
    for name in (f"{split}.txt", f"ptb.{split}.txt"):
        path = os.path.join(base_dir, name)
        if os.path.isfile(path):
            return path
    return None


class Corpus:
    """The training and test id streams of a PTB folder, over one shared ``Dictionary``.

    The training split is tokenized first, then the test split, so ids are in order of first
    appearance in ``train`` then ``test``. The validation split is not read (as in the course),
    except when the folder has no training split: then the validation split stands in for it,
    with a warning (the embedded and shared copies ship only validation and test text).

    Args:
        base_dir: folder with ``train.txt``/``test.txt`` or ``ptb.train.txt``/``ptb.test.txt``.
        max_lines: read at most this many lines of each file (None: all).

    Attributes:
        dictionary: the shared ``Dictionary``.
        train, test: lists of word ids, ``<eos>`` after every line.
        train_split: ``"train"``, or ``"valid"`` when the validation text stood in.
    """

    def __init__(self, base_dir: str, max_lines: int | None = None):
        self.dictionary = Dictionary()
        train_path = _split_file(base_dir, "train")
        self.train_split = "train"
        if train_path is None:
            train_path = _split_file(base_dir, "valid")
            self.train_split = "valid"
            if train_path is not None:
                warnings.warn(
                    f"{base_dir} has no PTB training split; using the validation split as "
                    "training data. Run `python -m needle.data.download ptb` for the full set.",
                    stacklevel=2,
                )
        test_path = _split_file(base_dir, "test")
        if train_path is None or test_path is None:
            raise FileNotFoundError(
                f"{base_dir} needs train.txt (or valid.txt) and test.txt, also accepted with a "
                "'ptb.' prefix; fetch them with `python -m needle.data.download ptb`"
            )
        self.train = self.tokenize(train_path, max_lines)
        self.test = self.tokenize(test_path, max_lines)

    def tokenize(self, path: str, max_lines: int | None = None) -> list[int]:
        """Read up to ``max_lines`` lines of ``path`` and return their word ids.

        Each line is split on whitespace and followed by ``<eos>``; new words are added to
        ``self.dictionary``.

        Returns:
            the ids of all words of the lines read, in order.
        """
        ### BEGIN YOUR SOLUTION (hw4)
        ids = []
        with open(path, encoding="utf-8") as f:
            for line_number, line in enumerate(f):
                if max_lines is not None and line_number >= max_lines:
                    break
                for word in line.split() + [END_OF_SENTENCE]:
                    ids.append(self.dictionary.add_word(word))
        return ids
        ### END YOUR SOLUTION


def batchify(data, batch_size: int, device=None, dtype=None) -> np.ndarray:
    """Arrange an id stream in ``batch_size`` columns, each a contiguous piece of the stream.

    The stream is trimmed to ``nbatch = len(data) // batch_size`` ids per column; column ``j``
    holds ``data[j*nbatch : (j+1)*nbatch]``, so reading down a column follows the text::

        data = [0 1 2 3 4 5 6 7 8 9], batch_size 2  ->  [[0 5]
                                                         [1 6]
                                                         [2 7]
                                                         [3 8]
                                                         [4 9]]

    Args:
        data: word ids (list or 1-D array).
        batch_size: number of columns (independent streams).
        device, dtype: accepted for the course's signature; the result is numpy and
            ``get_batch`` makes the tensors.

    Returns:
        numpy int64 array of shape ``(nbatch, batch_size)``.
    """
    ### BEGIN YOUR SOLUTION (hw4)
    ids = np.asarray(data, dtype=np.int64)
    nbatch = len(ids) // batch_size
    columns = ids[: nbatch * batch_size].reshape(batch_size, nbatch)
    return np.ascontiguousarray(columns.T)
    ### END YOUR SOLUTION


def get_batch(batches: np.ndarray, i: int, bptt: int, device=None, dtype=None):
    """The input window starting at row ``i`` of ``batchify``'s output and its targets.

    ``seq_len = min(bptt, nbatch - 1 - i)`` rows are taken; the targets are the same window
    shifted down by one row (each word's next word), flattened row by row.

    Args:
        batches: ``(nbatch, batch_size)`` array from ``batchify``.
        i: first row of the window.
        bptt: the longest window (truncated backpropagation-through-time length).
        device: device of the tensors (default ``ndl.default_device()``).
        dtype: dtype of the tensors (default ``"float32"``).

    Returns:
        ``(data, target)``: Tensors of shapes ``(seq_len, batch_size)`` and
        ``(seq_len * batch_size,)``, where ``data = batches[i : i+seq_len]`` and
        ``target = batches[i+1 : i+1+seq_len].flatten()``.
    """
    ### BEGIN YOUR SOLUTION (hw4)
    seq_len = min(bptt, len(batches) - 1 - i)
    if seq_len < 1:
        raise ValueError(f"no (input, target) window starts at row {i} of {len(batches)} rows")
    device = device if device is not None else default_device()
    dtype = dtype if dtype is not None else "float32"
    data = batches[i : i + seq_len]
    target = batches[i + 1 : i + 1 + seq_len].reshape(-1)
    return (
        Tensor(data, device=device, dtype=dtype, requires_grad=False),
        Tensor(target, device=device, dtype=dtype, requires_grad=False),
    )
    ### END YOUR SOLUTION
