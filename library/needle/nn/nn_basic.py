"""The core of ``ndl.nn``: Parameter, Module, and the basic layers.

A ``Module`` owns its trainable ``Parameter`` s as plain attributes (also inside lists,
tuples and dicts of attributes, and inside sub-modules); ``parameters()`` finds them all, in
the order the attributes were assigned. Layers create their parameters in ``__init__`` in a
documented order: with numpy's global seed fixed, that order fixes every initial value.
``forward`` is written with needle ops only, so autodiff gives every gradient.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from types import FunctionType
from typing import Any, Callable, Iterator

import numpy as np

from needle import init, ops
from needle.autograd import Tensor


class Parameter(Tensor):
    """A Tensor that a Module trains (``Module.parameters()`` collects these)."""


def _named_items(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Every Tensor and Module directly reachable from ``value`` (through lists, tuples and
    dicts, not through Modules), with dotted names such as ``"cells.0"``."""
    if isinstance(value, (Tensor, Module)):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _named_items(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _named_items(item, f"{prefix}.{index}" if prefix else str(index))


class Module:
    """Base class of every layer and model.

    Subclasses call ``super().__init__()``, assign parameters and sub-modules as attributes
    in ``__init__``, and define ``forward``; calling the module calls ``forward``.

    Beyond the course's API (``parameters``, ``train``, ``eval``, ``__call__``) a module
    offers ``state_dict`` / ``load_state_dict`` (names such as ``"0.weight"``, buffers like
    BatchNorm's running statistics included), ``save`` / ``load`` to ``.npz`` files,
    ``num_parameters`` and a nested ``repr`` showing parameter shapes.
    """

    # Class-level default, so a module whose __init__ forgot super().__init__() still works.
    training: bool = True
    # Names of plain-Tensor attributes that are state to save (e.g. running statistics);
    # other Tensor attributes (caches, last attention probabilities) are not saved.
    _buffer_names: tuple[str, ...] = ()

    def __init__(self):
        self.training = True

    # ---- attributes ------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        # Assigning over a method (``self.parameters = [...]``) would silently break the module.
        class_attr = getattr(type(self), name, None)
        if isinstance(class_attr, (FunctionType, property, classmethod, staticmethod)):
            raise AttributeError(
                f"cannot set {type(self).__name__}.{name}: it would hide the method {name}()"
            )
        if name == "training" and not isinstance(value, bool):
            raise TypeError(f"{type(self).__name__}.training must be a bool, got {value!r}")
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup failed: say what does exist instead of guessing.
        if name.startswith("__"):
            raise AttributeError(name)
        known = ", ".join(object.__getattribute__(self, "__dict__")) or "none"
        raise AttributeError(
            f"{type(self).__name__} has no attribute {name!r} (its attributes: {known}); "
            "attributes are set in __init__, after super().__init__()"
        )

    # ---- traversal -------------------------------------------------------------------------
    def _named_members(self) -> Iterator[tuple[str, Any]]:
        """This module's own Tensors and direct sub-modules, with their names."""
        for name, value in self.__dict__.items():
            yield from _named_items(value, name)

    def named_children(self) -> list[tuple[str, Module]]:
        """Direct sub-modules with their attribute names (``"rnn_cells.0"``, ``"0"``)."""
        return [(name, m) for name, m in self._named_members() if isinstance(m, Module)]

    def _children(self) -> list[Module]:
        """Every sub-module, at any depth (the module itself excluded)."""
        found = []
        for _, child in self.named_children():
            found.append(child)
            found.extend(child._children())
        return found

    def _named_tensors(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """Parameters and registered buffers of this module and its sub-modules."""
        for name, value in self._named_members():
            full_name = f"{prefix}{name}"
            if isinstance(value, Module):
                yield from value._named_tensors(full_name + ".")
            elif isinstance(value, Parameter) or name in self._buffer_names:
                yield full_name, value

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """``(name, parameter)`` pairs; a parameter shared by two layers appears once."""
        seen, named = set(), []
        for name, tensor in self._named_tensors():
            if isinstance(tensor, Parameter) and id(tensor) not in seen:
                seen.add(id(tensor))
                named.append((name, tensor))
        return named

    def parameters(self) -> list[Parameter]:
        """All trainable parameters, in the order their attributes were assigned."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> list[tuple[str, Tensor]]:
        """State that is saved but not trained (attributes listed in ``_buffer_names``)."""
        return [(n, t) for n, t in self._named_tensors() if not isinstance(t, Parameter)]

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return sum(math.prod(p.shape) for p in self.parameters())

    # ---- modes -----------------------------------------------------------------------------
    def eval(self) -> Module:
        """Inference mode for this module and every sub-module (Dropout off, BatchNorm uses
        running statistics)."""
        self.training = False
        for m in self._children():
            m.training = False
        return self

    def train(self) -> Module:
        """Training mode for this module and every sub-module."""
        self.training = True
        for m in self._children():
            m.training = True
        return self

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # ---- saving and loading ----------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer as numpy arrays, keyed by dotted names."""
        return OrderedDict(
            (name, tensor.numpy().copy())
            for name, tensor in self.named_parameters() + self.named_buffers()
        )

    def load_state_dict(self, state: dict, strict: bool = True) -> Module:
        """Copy arrays from ``state`` (as made by ``state_dict``) into this module in place.

        Args:
            state: mapping from names to arrays (numpy arrays or Tensors).
            strict: require exactly the same names as this module's ``state_dict``.

        Raises:
            KeyError: with ``strict``, when names are missing or unexpected.
            ValueError: when an array's shape differs from the module's.
        """
        targets = dict(self.named_parameters() + self.named_buffers())
        if strict:
            missing = sorted(set(targets) - set(state))
            unexpected = sorted(set(state) - set(targets))
            if missing or unexpected:
                raise KeyError(
                    f"load_state_dict into {type(self).__name__}: missing {missing}, "
                    f"unexpected {unexpected}"
                )
        for name, value in state.items():
            if name not in targets:
                continue
            tensor = targets[name]
            array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
            if tuple(array.shape) != tuple(tensor.shape):
                raise ValueError(
                    f"load_state_dict: {name} has shape {tuple(array.shape)}, "
                    f"the module expects {tuple(tensor.shape)}"
                )
            tensor.data = Tensor(array, device=tensor.device, dtype=tensor.dtype)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write ``state_dict()`` to an ``.npz`` file (plain arrays, no pickle)."""
        arrays: dict[str, Any] = dict(self.state_dict())  # names -> arrays, as savez's keywords
        np.savez(path, **arrays)

    def load(self, path: str | os.PathLike, strict: bool = True) -> Module:
        """Read weights written by ``save`` into this module (in place; returns it)."""
        with np.load(path, allow_pickle=False) as archive:
            return self.load_state_dict({name: archive[name] for name in archive.files}, strict)

    # ---- printing --------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The layer's configuration, shown inside its ``repr``."""
        return ""

    def __repr__(self) -> str:
        own = [
            f"{name} {tuple(value.shape)}"
            for name, value in self._named_members()
            if isinstance(value, Parameter) or name in self._buffer_names
        ]
        header = ", ".join(part for part in (self.extra_repr(), ", ".join(own)) if part)
        children = self.named_children()
        if not children:
            return f"{type(self).__name__}({header})"
        lines = [f"{type(self).__name__}({header}"]
        for name, child in children:
            child_lines = repr(child).split("\n")
            lines.append(f"  ({name}): " + child_lines[0])
            lines.extend("  " + line for line in child_lines[1:])
        lines.append(")")
        return "\n".join(lines)


class Identity(Module):
    """``y = x``."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class Linear(Module):
    """Affine map ``y = x W + b``.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: learn the additive bias ``b``.
        device, dtype: where and how the parameters are stored.

    Parameters (created in this order):
        weight: ``(in_features, out_features)``, ``kaiming_uniform(in_features, out_features)``.
        bias: ``(1, out_features)``, ``kaiming_uniform(out_features, 1)`` reshaped.

    Shape:
        input ``(*, in_features)`` → output ``(*, out_features)`` (any leading dims).
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype="float32"):
        ### BEGIN YOUR SOLUTION (hw2)
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(
            init.kaiming_uniform(in_features, out_features, device=device, dtype=dtype)
        )
        if bias:
            bias_column = init.kaiming_uniform(out_features, 1, device=device, dtype=dtype)
            self.bias: Parameter | None = Parameter(bias_column.reshape((1, out_features)))
        else:
            self.bias = None
        ### END YOUR SOLUTION

    def forward(self, X: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw2)
        leading = X.shape[:-1]
        if len(leading) != 1:  # fold every leading dim into one batch dim for a 2-D matmul
            X = X.reshape((math.prod(leading), self.in_features))
        out = X @ self.weight
        if self.bias is not None:
            out = out + self.bias.broadcast_to(out.shape)
        if len(leading) != 1:
            out = out.reshape((*leading, self.out_features))
        return out
        ### END YOUR SOLUTION

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Flatten(Module):
    """Keep the batch dimension, merge the rest: ``(B, X0, X1, ...)`` → ``(B, X0*X1*...)``."""

    def forward(self, X: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw2)
        return X.reshape((X.shape[0], math.prod(X.shape[1:])))
        ### END YOUR SOLUTION


class ReLU(Module):
    """``y = max(x, 0)`` elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw2)
        return ops.relu(x)
        ### END YOUR SOLUTION


class Sequential(Module):
    """Apply ``modules`` one after the other: ``y = m_n(... m_2(m_1(x)))``.

    Children are named by position in ``state_dict`` and ``repr`` (``"0.weight"``);
    ``model[i]`` and ``len(model)`` give access to them.
    """

    def __init__(self, *modules):
        ### BEGIN YOUR SOLUTION (hw2)
        super().__init__()
        self.modules = modules
        ### END YOUR SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw2)
        for module in self.modules:
            x = module(x)
        return x
        ### END YOUR SOLUTION

    def _named_members(self) -> Iterator[tuple[str, Any]]:
        for name, value in self.__dict__.items():
            if name == "modules":  # name children "0", "1", ... like PyTorch
                yield from _named_items(value, "")
            else:
                yield from _named_items(value, name)

    def __getitem__(self, index: int) -> Module:
        return self.modules[index]

    def __len__(self) -> int:
        return len(self.modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.modules)


class SoftmaxLoss(Module):
    """Mean cross-entropy of logits ``z`` against integer labels ``y``:
    ``loss = mean_i (log sum_j exp(z_ij) - z_{i, y_i})``.

    Shape:
        logits ``(N, K)``, labels ``(N,)`` → a scalar Tensor.
    """

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw2)
        batch_size, num_classes = logits.shape
        y_one_hot = init.one_hot(num_classes, y, device=logits.device, dtype=logits.dtype)
        true_class_logits = (logits * y_one_hot).sum(axes=(1,))
        return (ops.logsumexp(logits, axes=(1,)) - true_class_logits).sum() / batch_size
        ### END YOUR SOLUTION


class BatchNorm1d(Module):
    """Batch normalisation over the batch axis:
    ``y = w * (x - mean) / sqrt(var + eps) + b`` per feature.

    In training, ``mean`` and ``var`` are the batch's (biased variance, divided by N), and
    the running estimates move towards them:
    ``running = (1 - momentum) * running + momentum * batch_stat``.
    In eval mode the running estimates are used instead.

    Args:
        dim: number of features.
        eps: added to the variance for stability.
        momentum: weight of the new batch in the running estimates.

    Parameters: ``weight`` (ones) and ``bias`` (zeros), shape ``(dim,)``.
    Buffers (saved, not trained): ``running_mean`` (zeros), ``running_var`` (ones).

    Shape:
        ``(N, dim)`` → ``(N, dim)``.
    """

    _buffer_names = ("running_mean", "running_var")

    def __init__(self, dim, eps=1e-5, momentum=0.1, device=None, dtype="float32"):
        ### BEGIN YOUR SOLUTION (hw2)
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.momentum = momentum
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype))
        self.running_mean = init.zeros(dim, device=device, dtype=dtype)
        self.running_var = init.ones(dim, device=device, dtype=dtype)
        ### END YOUR SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw2)
        batch_size = x.shape[0]
        feature_row = (1, self.dim)

        def per_feature(t: Tensor) -> Tensor:  # (dim,) → broadcast over the batch
            return t.reshape(feature_row).broadcast_to(x.shape)

        if self.training:
            mean = x.sum(axes=(0,)) / batch_size
            centered = x + per_feature(-mean)  # (negating the means, not a broadcast copy)
            var = (centered**2).sum(axes=(0,)) / batch_size
            # Running statistics are data, not part of the graph: update them detached.
            m = self.momentum
            self.running_mean.data = (1 - m) * self.running_mean + m * mean.detach()
            self.running_var.data = (1 - m) * self.running_var + m * var.detach()
        else:
            centered = x - per_feature(self.running_mean)
            var = self.running_var
        normalized = centered / per_feature((var + self.eps) ** 0.5)
        return per_feature(self.weight) * normalized + per_feature(self.bias)
        ### END YOUR SOLUTION

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm2d(BatchNorm1d):
    """BatchNorm1d over the channels of an image batch: statistics per channel, over N, H, W.

    Shape:
        ``(N, C, H, W)`` → ``(N, C, H, W)``; ``dim`` = C.
    """

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        # NCHW → NHWC → (N*H*W, C): every pixel becomes one sample of BatchNorm1d.
        rows = ops.permute(x, (0, 2, 3, 1)).reshape((n * h * w, c))
        y = super().forward(rows).reshape((n, h, w, c))
        return ops.permute(y, (0, 3, 1, 2))


class LayerNorm1d(Module):
    """Layer normalisation of each sample over its features (the last axis):
    ``y = w * (x - mean) / sqrt(var + eps) + b`` with the biased variance.

    Parameters: ``weight`` (ones) and ``bias`` (zeros), shape ``(dim,)``.

    Shape:
        ``(N, dim)`` → ``(N, dim)`` (any number of leading dims is accepted).
    """

    def __init__(self, dim, eps=1e-5, device=None, dtype="float32"):
        ### BEGIN YOUR SOLUTION (hw2)
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype))
        ### END YOUR SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw2)
        last = x.ndim - 1
        stat_shape = x.shape[:-1] + (1,)
        feature_shape = (1,) * last + (self.dim,)

        def per_sample(t: Tensor) -> Tensor:  # reduced over the last axis → broadcast back
            return t.reshape(stat_shape).broadcast_to(x.shape)

        centered = x - per_sample(x.sum(axes=(last,)) / self.dim)
        var = (centered**2).sum(axes=(last,)) / self.dim
        normalized = centered / per_sample((var + self.eps) ** 0.5)
        weight = self.weight.reshape(feature_shape).broadcast_to(x.shape)
        bias = self.bias.reshape(feature_shape).broadcast_to(x.shape)
        return weight * normalized + bias
        ### END YOUR SOLUTION

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"


class Dropout(Module):
    """Inverted dropout: in training, zero each entry with probability ``p`` and scale the
    survivors by ``1 / (1 - p)`` so the expected output equals the input; identity in eval.

    The mask is ``init.randb(*x.shape, p=1 - p)``, drawn from numpy's global RNG when
    ``forward`` runs (even for ``p = 0``, so the RNG stream does not depend on ``p``).
    """

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw2)
        if not self.training:
            return x
        keep = 1 - self.p
        mask = init.randb(*x.shape, p=keep, device=x.device, dtype=x.dtype)
        if keep == 0:  # everything dropped; avoid dividing by zero
            return x * 0.0
        return x * mask / keep
        ### END YOUR SOLUTION

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Residual(Module):
    """Skip connection ``y = fn(x) + x``."""

    def __init__(self, fn: Module | Callable[[Tensor], Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw2)
        return self.fn(x) + x
        ### END YOUR SOLUTION
