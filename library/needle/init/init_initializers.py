"""Weight initialisers that keep activations at a sensible scale (Glorot/Xavier, He/Kaiming).

Each returns a Tensor of shape ``(fan_in, fan_out)`` (or ``shape`` for ``kaiming_uniform``)
drawn through ``init.rand`` / ``init.randn``, so numpy's global seed fixes the values.
Extra keyword arguments (``device``, ``dtype``, ``requires_grad``) are passed on.
"""

from __future__ import annotations

import math

from .init_basic import rand, randn

# Gain sqrt(2) keeps the variance of ReLU activations constant from layer to layer.
_RELU_GAIN = math.sqrt(2.0)


def _relu_gain(nonlinearity: str) -> float:
    if nonlinearity != "relu":
        raise ValueError(f"only nonlinearity='relu' is supported, got {nonlinearity!r}")
    return _RELU_GAIN


def xavier_uniform(fan_in, fan_out, gain=1.0, **kwargs):
    """Glorot uniform: ``U(-a, a)`` with ``a = gain * sqrt(6 / (fan_in + fan_out))``.

    Shape:
        ``(fan_in, fan_out)``.
    """
    ### BEGIN YOUR SOLUTION (hw2)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rand(fan_in, fan_out, low=-bound, high=bound, **kwargs)
    ### END YOUR SOLUTION


def xavier_normal(fan_in, fan_out, gain=1.0, **kwargs):
    """Glorot normal: ``N(0, std^2)`` with ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    Shape:
        ``(fan_in, fan_out)``.
    """
    ### BEGIN YOUR SOLUTION (hw2)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return randn(fan_in, fan_out, std=std, **kwargs)
    ### END YOUR SOLUTION


def kaiming_uniform(fan_in, fan_out, shape=None, nonlinearity="relu", **kwargs):
    """He uniform: ``U(-b, b)`` with ``b = gain * sqrt(3 / fan_in)``, ``gain = sqrt(2)``.

    Args:
        fan_in, fan_out: number of inputs / outputs of each unit (a convolution counts its
            receptive field: ``fan_in = in_channels * k * k``).
        shape: draw this shape instead of ``(fan_in, fan_out)``; the bound still comes
            from ``fan_in`` (used by ``nn.Conv`` for its ``(k, k, in, out)`` kernel).
        nonlinearity: only ``"relu"``.

    Shape:
        ``shape`` if given, else ``(fan_in, fan_out)``.
    """
    ### BEGIN YOUR SOLUTION (hw2)
    bound = _relu_gain(nonlinearity) * math.sqrt(3.0 / fan_in)
    shape = (fan_in, fan_out) if shape is None else tuple(shape)
    return rand(*shape, low=-bound, high=bound, **kwargs)
    ### END YOUR SOLUTION


def kaiming_normal(fan_in, fan_out, nonlinearity="relu", **kwargs):
    """He normal: ``N(0, std^2)`` with ``std = gain / sqrt(fan_in)``, ``gain = sqrt(2)``.

    Shape:
        ``(fan_in, fan_out)``.
    """
    ### BEGIN YOUR SOLUTION (hw2)
    std = _relu_gain(nonlinearity) / math.sqrt(fan_in)
    return randn(fan_in, fan_out, std=std, **kwargs)
    ### END YOUR SOLUTION
