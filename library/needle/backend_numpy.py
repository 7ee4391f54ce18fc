"""The ``np`` backend: plain numpy arrays on one CPU device (``NEEDLE_BACKEND=np``)."""

import numpy


class Device:
    """A place where arrays live."""

    name = "device"

    def enabled(self) -> bool:
        return True


class CPUDevice(Device):
    """numpy arrays in main memory."""

    name = "cpu"

    def __repr__(self) -> str:
        return "needle.cpu()"

    def __hash__(self):
        return self.__repr__().__hash__()

    def __eq__(self, other):
        return isinstance(other, CPUDevice)

    def zeros(self, *shape, dtype="float32"):
        return numpy.zeros(shape, dtype=dtype)

    def ones(self, *shape, dtype="float32"):
        return numpy.ones(shape, dtype=dtype)

    def randn(self, *shape, dtype="float32"):
        # Draw in float64, as numpy does, then cast: seeded values match the nd backend.
        return numpy.random.randn(*shape).astype(dtype)

    def rand(self, *shape, dtype="float32"):
        return numpy.random.rand(*shape).astype(dtype)

    def one_hot(self, n, i, dtype="float32"):
        return numpy.eye(n, dtype=dtype)[numpy.asarray(i, dtype=numpy.int64)]

    def empty(self, shape, dtype="float32"):
        return numpy.empty(shape, dtype=dtype)

    def full(self, shape, fill_value, dtype="float32"):
        return numpy.full(shape, fill_value, dtype=dtype)


_CPU = CPUDevice()


def cpu() -> CPUDevice:
    return _CPU


def default_device() -> CPUDevice:
    return _CPU


def all_devices() -> list:
    return [_CPU]
