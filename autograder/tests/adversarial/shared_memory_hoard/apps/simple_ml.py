# adversarial: append to the release's version
# ruff: noqa
# Memory RLIMIT_AS does not see: anonymous memfd files written page by page with pwrite (never
# mapped, so the address space stays small), 32 MiB each (under RLIMIT_FSIZE), until half a
# GiB past the run's memory limit (its RLIMIT_AS). A memory cgroup counts these pages and stops
# the run; without one the hoard is capped there so the test machine survives, and the report
# says the memory limit is not enforced.
import os as _os
import resource as _resource

_limit = _resource.getrlimit(_resource.RLIMIT_AS)[0]
_cap = min(_limit if _limit > 0 else 2 << 30, 3 << 30) + (512 << 20)
_held, _files, _page = 0, [], b"\x01" * (1 << 20)
try:
    while _held < _cap:
        _fd = _os.memfd_create("hoard")
        for _offset in range(0, 32 << 20, 1 << 20):
            _os.pwrite(_fd, _page, _offset)
        _files.append(_fd)
        _held += 32 << 20
    print("HOARDED", _held >> 20, "MiB", flush=True)
except OSError as _error:
    print("REFUSED at", _held >> 20, "MiB:", _error, flush=True)
