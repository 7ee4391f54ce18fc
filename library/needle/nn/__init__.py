"""Layers and models (``ndl.nn``): the Module system, basic layers, convolution, sequence
models and the Transformer."""

from .nn_basic import (
    BatchNorm1d,
    BatchNorm2d,
    Dropout,
    Flatten,
    Identity,
    LayerNorm1d,
    Linear,
    Module,
    Parameter,
    ReLU,
    Residual,
    Sequential,
    SoftmaxLoss,
)
from .nn_conv import Conv
from .nn_sequence import LSTM, RNN, Embedding, LSTMCell, RNNCell, Sigmoid, Tanh
from .nn_transformer import AttentionLayer, MultiHeadAttention, Transformer, TransformerLayer

__all__ = [
    "LSTM",
    "RNN",
    "AttentionLayer",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv",
    "Dropout",
    "Embedding",
    "Flatten",
    "Identity",
    "LSTMCell",
    "LayerNorm1d",
    "Linear",
    "Module",
    "MultiHeadAttention",
    "Parameter",
    "RNNCell",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "SoftmaxLoss",
    "Tanh",
    "Transformer",
    "TransformerLayer",
]
