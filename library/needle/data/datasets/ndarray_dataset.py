"""A dataset made of numpy arrays that already sit in memory."""

from __future__ import annotations

import numpy as np

from ..data_basic import Dataset


class NDArrayDataset(Dataset):
    """Zip equally long arrays into a dataset: ``ds[i] == tuple(a[i] for a in arrays)``.

    Args:
        *arrays: numpy arrays (or array-likes) with the same length along axis 0.

    Example:
        >>> ds = NDArrayDataset(np.zeros((10, 3)), np.arange(10))
        >>> x, y = ds[2:5]   # x: (3, 3), y: (3,)
    """

    def __init__(self, *arrays):
        super().__init__()
        if not arrays:
            raise ValueError("NDArrayDataset needs at least one array")
        self.arrays = tuple(np.asarray(a) for a in arrays)
        lengths = {a.shape[0] for a in self.arrays}
        if len(lengths) != 1:
            shapes = ", ".join(str(a.shape) for a in self.arrays)
            raise ValueError(
                f"NDArrayDataset arrays must have the same length, got shapes {shapes}"
            )

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, index) -> tuple:
        return tuple(a[index] for a in self.arrays)
