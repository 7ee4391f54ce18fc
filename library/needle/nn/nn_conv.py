"""Convolution layer on NCHW image batches."""

from __future__ import annotations

import math

from needle import init, ops
from needle.autograd import Tensor

from .nn_basic import Module, Parameter


class Conv(Module):
    """2-D convolution with "same" padding, on ``(N, C, H, W)`` batches:
    ``y[n, o, i, j] = b[o] + sum_{c, di, dj} x[n, c, s*i + di - p, s*j + dj - p] w[di, dj, c, o]``
    with ``p = k // 2`` and zeros outside the image.

    Args:
        in_channels, out_channels: channel counts C_in, C_out.
        kernel_size: k (a square kernel; for a tuple the first entry is used).
        stride: s (likewise). Padding is ``k // 2``, so stride 1 keeps H and W.
        bias: learn a per-channel bias.

    Parameters (created in this order):
        weight: ``(k, k, C_in, C_out)``, Kaiming uniform with
            ``fan_in = C_in * k * k``, ``fan_out = C_out * k * k``.
        bias: ``(C_out,)``, uniform in ``±1 / sqrt(C_in * k * k)``.

    Shape:
        ``(N, C_in, H, W)`` → ``(N, C_out, (H + 2*(k//2) - k)//s + 1, (W + 2*(k//2) - k)//s + 1)``.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        bias=True,
        device=None,
        dtype="float32",
    ):
        ### BEGIN YOUR SOLUTION (hw4)
        super().__init__()
        if isinstance(kernel_size, tuple):
            kernel_size = kernel_size[0]
        if isinstance(stride, tuple):
            stride = stride[0]
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        receptive_field = kernel_size * kernel_size
        fan_in = in_channels * receptive_field
        self.weight = Parameter(
            init.kaiming_uniform(
                fan_in,
                out_channels * receptive_field,
                shape=(kernel_size, kernel_size, in_channels, out_channels),
                device=device,
                dtype=dtype,
            )
        )
        if bias:
            bound = 1.0 / math.sqrt(fan_in)
            self.bias: Parameter | None = Parameter(
                init.rand(out_channels, low=-bound, high=bound, device=device, dtype=dtype)
            )
        else:
            self.bias = None
        ### END YOUR SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw4)
        # The conv op works on NHWC: NCHW → NHWC, convolve, and back.
        nhwc = ops.permute(x, (0, 2, 3, 1))
        out = ops.conv(nhwc, self.weight, stride=self.stride, padding=self.padding)
        if self.bias is not None:
            bias = self.bias.reshape((1, 1, 1, self.out_channels)).broadcast_to(out.shape)
            out = out + bias
        return ops.permute(out, (0, 3, 1, 2))
        ### END YOUR SOLUTION

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
