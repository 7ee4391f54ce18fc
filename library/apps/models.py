"""The course's hw4 models: ResNet9 for 32x32 colour images and a word-level LanguageModel."""

from __future__ import annotations

import needle as ndl
import needle.nn as nn


def ConvBN(in_channels, out_channels, kernel_size, stride, device=None, dtype="float32"):
    """``Conv → BatchNorm2d → ReLU``, the building block of ResNet9."""
    return nn.Sequential(
        nn.Conv(in_channels, out_channels, kernel_size, stride=stride, device=device, dtype=dtype),
        nn.BatchNorm2d(out_channels, device=device, dtype=dtype),
        nn.ReLU(),
    )


class ResNet9(nn.Module):
    """A small residual CNN (431,946 parameters) in the spirit of the cifar10-fast ResNet9,
    with a quarter of its channels and strided convolutions instead of pooling::

        ConvBN(3, 16, 7, stride 4) → ConvBN(16, 32, 3, 2)
        → Residual[ConvBN(32, 32, 3, 1) → ConvBN(32, 32, 3, 1)]
        → ConvBN(32, 64, 3, 2) → ConvBN(64, 128, 3, 2)
        → Residual[ConvBN(128, 128, 3, 1) → ConvBN(128, 128, 3, 1)]
        → Flatten → Linear(128, 128) → ReLU → Linear(128, 10)

    The residual adds are plain (no ReLU after them). Modules are built in this order.

    Shape:
        ``(N, 3, 32, 32)`` → logits ``(N, 10)``.
    """

    def __init__(self, device=None, dtype="float32"):
        ### BEGIN YOUR SOLUTION (hw4)
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.model = nn.Sequential(
            ConvBN(3, 16, 7, 4, **kw),
            ConvBN(16, 32, 3, 2, **kw),
            nn.Residual(nn.Sequential(ConvBN(32, 32, 3, 1, **kw), ConvBN(32, 32, 3, 1, **kw))),
            ConvBN(32, 64, 3, 2, **kw),
            ConvBN(64, 128, 3, 2, **kw),
            nn.Residual(nn.Sequential(ConvBN(128, 128, 3, 1, **kw), ConvBN(128, 128, 3, 1, **kw))),
            nn.Flatten(),
            nn.Linear(128, 128, **kw),
            nn.ReLU(),
            nn.Linear(128, 10, **kw),
        )
        ### END YOUR SOLUTION

    def forward(self, x):
        ### BEGIN YOUR SOLUTION (hw4)
        return self.model(x)
        ### END YOUR SOLUTION


class LanguageModel(nn.Module):
    """Next-word prediction: ``Embedding → RNN | LSTM | Transformer → Linear``.

    Args:
        embedding_size: size of the word vectors.
        output_size: vocabulary size (the number of classes of the output).
        hidden_size: hidden state size (RNN/LSTM) or feed-forward width (Transformer).
        num_layers: stacked layers of the sequence model.
        seq_model: ``"rnn"``, ``"lstm"`` or ``"transformer"``.
        seq_len: the longest sequence (the Transformer's positional table).

    Modules are built in the order embedding, sequence model, linear.

    Shape:
        x ``(seq_len, bs)`` word ids, h the sequence model's state or None →
        ``(logits (seq_len * bs, output_size), h)`` where h is ``(num_layers, bs, hidden)``
        for an RNN, a pair of those for an LSTM.
    """

    def __init__(
        self,
        embedding_size,
        output_size,
        hidden_size,
        num_layers=1,
        seq_model="rnn",
        seq_len=40,
        device=None,
        dtype="float32",
    ):
        ### BEGIN YOUR SOLUTION (hw4)
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.embedding_size = embedding_size
        self.output_size = output_size
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(output_size, embedding_size, **kw)
        if seq_model == "rnn":
            self.seq_model = nn.RNN(embedding_size, hidden_size, num_layers, **kw)
            features = hidden_size
        elif seq_model == "lstm":
            self.seq_model = nn.LSTM(embedding_size, hidden_size, num_layers, **kw)
            features = hidden_size
        elif seq_model == "transformer":
            self.seq_model = nn.Transformer(
                embedding_size, hidden_size, num_layers, sequence_len=seq_len, **kw
            )
            features = embedding_size
        else:
            raise ValueError(f"seq_model must be 'rnn', 'lstm' or 'transformer', got {seq_model!r}")
        self.linear = nn.Linear(features, output_size, **kw)
        ### END YOUR SOLUTION

    def forward(self, x, h=None):
        ### BEGIN YOUR SOLUTION (hw4)
        seq_len, batch_size = x.shape
        vectors = self.embedding(x)  # (seq_len, bs, embedding_size)
        outputs, h = self.seq_model(vectors, h)
        rows = outputs.reshape((seq_len * batch_size, outputs.shape[2]))
        return self.linear(rows), h
        ### END YOUR SOLUTION


if __name__ == "__main__":
    model = ResNet9(device=ndl.cpu())
    print(model)
    print("parameters:", model.num_parameters())
