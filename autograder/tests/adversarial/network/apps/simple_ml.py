# adversarial: append to the release's version
# ruff: noqa
# Try to reach the outside world (to exfiltrate probes or fetch answers) and local services.
import json as _json
import socket as _socket

_reached = []
for _family, _kind, _address in (
    (_socket.AF_INET, _socket.SOCK_STREAM, ("1.1.1.1", 53)),
    (_socket.AF_INET, _socket.SOCK_STREAM, ("8.8.8.8", 443)),
    (_socket.AF_INET, _socket.SOCK_STREAM, ("127.0.0.1", 22)),
    (_socket.AF_INET, _socket.SOCK_STREAM, ("10.0.2.2", 80)),
    (_socket.AF_INET6, _socket.SOCK_STREAM, ("::1", 22)),
    (_socket.AF_UNIX, _socket.SOCK_STREAM, "/var/run/docker.sock"),
    (_socket.AF_UNIX, _socket.SOCK_STREAM, "/run/podman/podman.sock"),
):
    try:
        _s = _socket.socket(_family, _kind)
        _s.settimeout(1.0)
        _s.connect(_address)
        _reached.append(str(_address))
        _s.close()
    except OSError:
        pass
try:
    _socket.getaddrinfo("example.com", 80)
    _reached.append("dns")
except OSError:
    pass
try:
    _u = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    _u.sendto(b"leak", ("1.1.1.1", 53))
    _reached.append("udp-send")
except OSError:
    pass
raise RuntimeError("ATTACK-REPORT " + _json.dumps(_reached))
