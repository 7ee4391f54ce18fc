"""Optimisers and learning-rate schedules (``ndl.optim``).

An optimiser updates ``p.data`` from ``p.grad`` for every parameter that has a gradient.
Updates work on detached tensors (``.data``), so a step builds no graph: after any number of
steps the number of live tensors stays flat. Every value stays float32.
"""

from __future__ import annotations

import math
from typing import Iterable

from needle.autograd import Tensor


def grad_of(p: Tensor) -> Tensor:
    """``p.grad.data``: the gradient of a parameter that has one (as ``params_with_grad()``
    returns them), outside any graph."""
    if p.grad is None:
        raise ValueError("the parameter has no gradient (run backward() first)")
    return p.grad.data


class Optimizer:
    """Base class: holds the parameters and clears their gradients.

    Args:
        params: the tensors to update (usually ``model.parameters()``).
    """

    lr: float  # the learning rate (of the optimisers that have one; schedulers change it)

    def __init__(self, params: Iterable[Tensor]):
        self.params = list(params)

    def step(self) -> None:
        raise NotImplementedError()

    def params_with_grad(self) -> list[Tensor]:
        """The parameters that received a gradient (the others are left alone)."""
        # A tensor that never took part in a backward pass has no ``grad`` attribute at all.
        return [p for p in self.params if getattr(p, "grad", None) is not None]

    def reset_grad(self) -> None:
        """Forget every gradient (``p.grad = None``) before the next backward pass."""
        for p in self.params:
            p.grad = None

    def clip_grad_norm(self, max_norm: float = 0.25) -> float:
        """Scale all gradients together so that their global L2 norm is at most ``max_norm``:
        ``g <- g * min(1, max_norm / (||g||_2 + 1e-6))`` with ``||g||_2`` over every entry of
        every parameter's gradient.

        Returns:
            the global norm before clipping.
        """
        ### BEGIN YOUR SOLUTION (hw2)
        params = self.params_with_grad()
        total_norm = math.sqrt(sum(float((grad_of(p) ** 2).sum().numpy()) for p in params))
        scale = max_norm / (total_norm + 1e-6)
        if scale < 1.0:
            for p in params:
                p.grad = grad_of(p) * scale
        return total_norm
        ### END YOUR SOLUTION


class SGD(Optimizer):
    """Stochastic gradient descent with dampened momentum and L2 weight decay.

    For each parameter ``θ`` with gradient ``g``:
    ``u <- momentum * u + (1 - momentum) * (g + weight_decay * θ)`` (``u`` starts at 0),
    ``θ <- θ - lr * u``.

    Args:
        params: parameters to update.
        lr: learning rate.
        momentum: β of the running average ``u`` (0: plain SGD).
        weight_decay: L2 penalty λ (adds ``λ θ`` to the gradient).

    State:
        u: dict parameter → momentum buffer.
    """

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params)
        self.lr = lr
        self.momentum = momentum
        self.u = {}
        self.weight_decay = weight_decay

    def step(self) -> None:
        ### BEGIN YOUR SOLUTION (hw2)
        for p in self.params_with_grad():
            grad = grad_of(p)
            if self.weight_decay:  # (skipped when 0, as is momentum: each is a pass over θ)
                grad = grad + self.weight_decay * p.data
            if self.momentum:
                if p in self.u:
                    grad = self.momentum * self.u[p] + (1 - self.momentum) * grad
                else:  # u starts at 0, so the first average is (1 - momentum) * grad
                    grad = (1 - self.momentum) * grad
            self.u[p] = grad
            p.data = p.data + (-self.lr) * grad  # (one op: a - b is a + (-b), two)
        ### END YOUR SOLUTION


class Adam(Optimizer):
    """Adam with bias correction and L2 weight decay (added to the gradient).

    With ``g = grad + weight_decay * θ`` and step count ``t`` (incremented once per ``step``):
    ``m <- β1 m + (1 - β1) g``, ``v <- β2 v + (1 - β2) g²``,
    ``m̂ = m / (1 - β1^t)``, ``v̂ = v / (1 - β2^t)``, ``θ <- θ - lr * m̂ / (sqrt(v̂) + eps)``.

    Args:
        params: parameters to update.
        lr: learning rate.
        beta1, beta2: decay rates of the first and second moment averages.
        eps: added to the denominator.
        weight_decay: L2 penalty λ.

    State:
        t: number of steps taken; m, v: dicts parameter → moment estimates.
    """

    def __init__(
        self,
        params,
        lr=0.01,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        weight_decay=0.0,
    ):
        super().__init__(params)
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weight_decay = weight_decay
        self.t = 0

        self.m = {}
        self.v = {}

    def step(self) -> None:
        ### BEGIN YOUR SOLUTION (hw2)
        self.t += 1
        beta1, beta2 = self.beta1, self.beta2
        for p in self.params_with_grad():
            grad = grad_of(p)
            if self.weight_decay:  # (skipped when 0: it is a pass over θ)
                grad = grad + self.weight_decay * p.data
            if p in self.m:
                m = beta1 * self.m[p] + (1 - beta1) * grad
                v = beta2 * self.v[p] + (1 - beta2) * grad**2
            else:  # both averages start at 0
                m = (1 - beta1) * grad
                v = (1 - beta2) * grad**2
            self.m[p], self.v[p] = m, v
            m_hat = m / (1 - beta1**self.t)
            v_hat = v / (1 - beta2**self.t)
            p.data = p.data - self.lr * m_hat / (v_hat**0.5 + self.eps)
        ### END YOUR SOLUTION


class LRScheduler:
    """Base class of learning-rate schedules: each ``step()`` (usually once per epoch)
    sets ``optimizer.lr`` to ``lr_at(epoch)`` for the next epoch.

    Args:
        optimizer: any optimiser with an ``lr`` attribute; its current ``lr`` is the base.
    """

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError()

    def step(self) -> float:
        """Advance one epoch and return the new learning rate."""
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)
        return self.optimizer.lr


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs:
    ``lr = base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        if step_size < 1:
            raise ValueError(f"step_size must be a positive number of epochs, got {step_size}")
        super().__init__(optimizer)
        self.step_size = step_size
        self.gamma = gamma

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR(LRScheduler):
    """Cosine decay from ``base_lr`` to ``min_lr`` over ``total_epochs``:
    ``lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * epoch / total_epochs)) / 2``,
    then ``min_lr``."""

    def __init__(self, optimizer: Optimizer, total_epochs: int, min_lr: float = 0.0):
        if total_epochs < 1:
            raise ValueError(f"total_epochs must be positive, got {total_epochs}")
        super().__init__(optimizer)
        self.total_epochs = total_epochs
        self.min_lr = min_lr

    def lr_at(self, epoch: int) -> float:
        progress = min(epoch, self.total_epochs) / self.total_epochs
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2
