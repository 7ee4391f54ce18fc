"""Random data augmentations for images stored as numpy ``H x W x C`` arrays.

Each transform draws its random numbers from numpy's global generator with one fixed call, so
seeded runs are reproducible: the call is part of each transform's contract.
"""

from __future__ import annotations

import numpy as np


class Transform:
    """A callable that maps one example (a numpy array) to a new one."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RandomFlipHorizontal(Transform):
    """Mirror an image left-right with probability ``p``.

    Draws ``np.random.rand() < p`` once per call; when true, reverses the width axis (axis 1).

    Args:
        p: probability of flipping.

    Shape:
        ``(H, W, C)`` (or ``(H, W)``) in, same shape out.
    """

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, img: np.ndarray) -> np.ndarray:
        ### BEGIN YOUR SOLUTION (hw2)
        flip_img = np.random.rand() < self.p
        if flip_img:
            return np.flip(img, axis=1)
        return img
        ### END YOUR SOLUTION


class RandomCrop(Transform):
    """Shift an image by up to ``padding`` pixels, filling the uncovered border with zeros.

    Draws ``shift_x, shift_y = np.random.randint(-padding, padding + 1, size=2)`` once per call,
    zero-pads height and width by ``padding`` on both sides, and returns the ``H x W`` window of
    the padded image whose top-left corner is at ``(padding + shift_x, padding + shift_y)``:
    ``shift_x`` moves along the height (axis 0), ``shift_y`` along the width (axis 1). So
    ``out[i, j] = img[i + shift_x, j + shift_y]`` where that index is inside the image, else 0.

    Args:
        padding: the largest shift, in pixels, along each axis.

    Shape:
        ``(H, W, C)`` (or ``(H, W)``) in, same shape out.
    """

    def __init__(self, padding: int = 3):
        self.padding = padding

    def __call__(self, img: np.ndarray) -> np.ndarray:
        ### BEGIN YOUR SOLUTION (hw2)
        shift_x, shift_y = np.random.randint(low=-self.padding, high=self.padding + 1, size=2)
        p = self.padding
        height, width = img.shape[0], img.shape[1]
        # Pad only the two spatial axes; channels (if any) are left alone.
        pad_width = ((p, p), (p, p)) + ((0, 0),) * (img.ndim - 2)
        padded = np.pad(img, pad_width, mode="constant")
        top, left = p + shift_x, p + shift_y
        return padded[top : top + height, left : left + width]
        ### END YOUR SOLUTION
