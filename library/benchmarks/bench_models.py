"""Whole-model speed of needle's C++ CPU backend against PyTorch on the CPU.

Three workloads, each timed in needle (``ndl.cpu()``) and in the equivalent PyTorch model in the
same run, with the same number of threads (1, then needle's default if larger), best of N with
the two interleaved (so a busy shared machine slows both alike):

- MLP 784-100-10, batch 100: one SGD training step (forward, loss, backward, update);
- ResNet9 (431,946 parameters), batch 128 of 3x32x32 images: forward + backward;
- LSTM language model (vocabulary 10,000, embedding 128, hidden 128, sequence 35, batch 16):
  one Adam training step.

Targets (one thread): MLP and ResNet9 at most 1.5x PyTorch's time, the LSTM language model at
most 2x. needle's Embedding picks rows (``take_rows``) like PyTorch's; the course's one-hot
product would cost two 0.7 GFLOP products and a 22 MB matrix per step here. Rows with more
threads are reported without a target: the per-op Python overhead of an eager engine does not
shrink with threads, while PyTorch's kernels do.

Run ``python library/benchmarks/bench_models.py`` for a table, or call ``run()``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from timing import best_seconds  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))

REPEATS = 5


def _copy_linear(ours, theirs) -> None:
    import torch

    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.numpy().T))
        theirs.bias.copy_(torch.tensor(ours.bias.numpy().reshape(-1)))


# ---- workloads -----------------------------------------------------------------------------


def _training_steps(device, x, y, model, opt, loss_fn, reference, torch_opt, outputs=None):
    """One training step each of needle and PyTorch on the same batch (x, y): forward, softmax
    loss, backward, optimizer step. ``outputs`` picks the logits from needle's model output
    (the language model also returns its hidden state)."""
    import needle as ndl
    import torch

    x_th, y_th = torch.tensor(x), torch.tensor(y)

    def needle_step():
        X = ndl.Tensor(x, device=device, requires_grad=False)
        labels = ndl.Tensor(y, device=device, requires_grad=False)
        opt.reset_grad()
        out = model(X)
        loss = loss_fn(outputs(out) if outputs else out, labels)
        loss.backward()
        opt.step()
        loss.numpy()

    def torch_step():
        torch_opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(reference(x_th), y_th)
        loss.backward()
        torch_opt.step()
        loss.item()

    return needle_step, torch_step


def mlp_step_functions(device):
    import needle as ndl
    import needle.nn as nn
    import torch

    rng = np.random.RandomState(0)
    x = rng.rand(100, 784).astype(np.float32)
    y = rng.randint(0, 10, size=100)
    np.random.seed(0)
    model = nn.Sequential(
        nn.Linear(784, 100, device=device), nn.ReLU(), nn.Linear(100, 10, device=device)
    )
    opt = ndl.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.SoftmaxLoss()
    reference = torch.nn.Sequential(
        torch.nn.Linear(784, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10)
    )
    _copy_linear(model[0], reference[0])
    _copy_linear(model[2], reference[2])
    torch_opt = torch.optim.SGD(reference.parameters(), lr=0.1)

    return _training_steps(device, x, y, model, opt, loss_fn, reference, torch_opt)


def torch_resnet9():
    import torch
    from torch import nn as tnn

    def conv_bn(a, b, k, s):
        return tnn.Sequential(tnn.Conv2d(a, b, k, s, k // 2), tnn.BatchNorm2d(b), tnn.ReLU())

    class Residual(tnn.Module):
        def __init__(self, *layers):
            super().__init__()
            self.fn = tnn.Sequential(*layers)

        def forward(self, x):
            return self.fn(x) + x

    return torch.nn.Sequential(
        conv_bn(3, 16, 7, 4),
        conv_bn(16, 32, 3, 2),
        Residual(conv_bn(32, 32, 3, 1), conv_bn(32, 32, 3, 1)),
        conv_bn(32, 64, 3, 2),
        conv_bn(64, 128, 3, 2),
        Residual(conv_bn(128, 128, 3, 1), conv_bn(128, 128, 3, 1)),
        tnn.Flatten(),
        tnn.Linear(128, 128),
        tnn.ReLU(),
        tnn.Linear(128, 10),
    )


def resnet9_functions(device):
    import needle as ndl
    import torch
    from models import ResNet9

    x = np.random.RandomState(0).rand(128, 3, 32, 32).astype(np.float32)
    np.random.seed(0)
    model = ResNet9(device=device)
    reference = torch_resnet9()
    assert model.num_parameters() == sum(p.numel() for p in reference.parameters())
    x_th = torch.tensor(x)

    def needle_step():
        for p in model.parameters():
            p.grad = None
        X = ndl.Tensor(x, device=device, requires_grad=False)
        model(X).sum().backward()
        model.parameters()[0].grad.numpy()

    def torch_step():
        reference.zero_grad()
        reference(x_th).sum().backward()

    return needle_step, torch_step


VOCAB, EMBEDDING, HIDDEN, SEQ_LEN, BATCH = 10_000, 128, 128, 35, 16


class TorchLanguageModel:
    def __init__(self):
        import torch

        self.embedding = torch.nn.Embedding(VOCAB, EMBEDDING)
        self.lstm = torch.nn.LSTM(EMBEDDING, HIDDEN)
        self.linear = torch.nn.Linear(HIDDEN, VOCAB)
        self.modules = [self.embedding, self.lstm, self.linear]

    def parameters(self):
        return [p for m in self.modules for p in m.parameters()]

    def __call__(self, x):
        out, _ = self.lstm(self.embedding(x))
        return self.linear(out.reshape(-1, HIDDEN))


def lstm_lm_functions(device):
    import needle as ndl
    import needle.nn as nn
    import torch
    from models import LanguageModel

    rng = np.random.RandomState(0)
    ids = rng.randint(0, VOCAB, size=(SEQ_LEN + 1, BATCH))
    x, y = ids[:-1], ids[1:].reshape(-1)
    np.random.seed(0)
    model = LanguageModel(EMBEDDING, VOCAB, HIDDEN, seq_model="lstm", device=device)
    opt = ndl.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.SoftmaxLoss()
    reference = TorchLanguageModel()
    torch_opt = torch.optim.Adam(reference.parameters(), lr=1e-3)

    return _training_steps(
        device, x, y, model, opt, loss_fn, reference, torch_opt, outputs=lambda out: out[0]
    )


WORKLOADS = [
    # (row label, functions factory, target ratio on one thread, repeats)
    ("MLP 784-100-10 SGD training step, batch 100", mlp_step_functions, 1.5, 20),
    ("ResNet9 forward + backward, batch 128", resnet9_functions, 1.5, 3),
    ("LSTM LM (vocab 10k, 128/128, 35x16) Adam training step", lstm_lm_functions, 2.0, 3),
]


def _thread_control():
    """``(get, set)`` for needle's CPU thread count, or None when the backend lacks them."""
    try:
        from needle.backend_ndarray import ndarray_backend_cpu as backend

        return backend.get_num_threads, backend.set_num_threads
    except (ImportError, AttributeError):
        return None


def run() -> list[dict]:
    """One row per workload and thread count (1, and needle's default when that is more):
    best-of-N milliseconds in needle (cpu) and PyTorch with the same threads, and the ratio."""
    import needle as ndl
    import torch

    if ndl.BACKEND != "nd" or not ndl.cpu().enabled():
        return [
            {
                "row": "models: needle cpu vs PyTorch",
                "skipped": "the C++ cpu backend is not available (NEEDLE_BACKEND=nd and a build)",
            }
        ]
    control = _thread_control()
    default_threads = control[0]() if control else 1
    rows = []
    for threads in sorted({1, default_threads}):
        if control:
            control[1](threads)
        torch.set_num_threads(threads)
        for label, factory, target, repeats in WORKLOADS:
            needle_fn, torch_fn = factory(ndl.cpu())
            needle_s, torch_s = best_seconds([needle_fn, torch_fn], repeats)
            rows.append(
                {
                    "row": f"models: {label} (cpu, {threads} thread{'s' if threads > 1 else ''})",
                    "needle": round(needle_s * 1e3, 2),
                    "reference": round(torch_s * 1e3, 2),
                    "unit": "ms",
                    "ratio": round(needle_s / torch_s, 2),
                    "target": f"<= {target:g}x PyTorch" if threads == 1 else "report only",
                }
            )
    if control:
        control[1](default_threads)
    return rows


if __name__ == "__main__":
    for row in run():
        if "skipped" in row:
            print(f"{row['row']}: skipped ({row['skipped']})")
            continue
        print(
            f"{row['row']}: needle {row['needle']} {row['unit']}, PyTorch {row['reference']} "
            f"{row['unit']}, ratio {row['ratio']} (target {row['target']})"
        )
