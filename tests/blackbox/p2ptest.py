# SPDX-License-Identifier: MIT
"""Black-box test harness for p2p.

Starts the real daemons on 127.0.0.1 with free ports in temporary
directories, and always kills what it started (process groups, at exit, on
SIGTERM/SIGINT, and when a test fails). Tests are unittest.TestCase classes;
run() prints TAP so automake's tap-driver counts every test case.

Use /usr/bin/python3 (Debian's): python3-requests and python3-grpcio live there.
"""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

BUILDDIR = os.environ.get("P2P_BUILDDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
SRCDIR = os.environ.get("P2P_SRCDIR") or BUILDDIR

_processes = []
_tempdirs = []
# Sanitizer (ASan/UBSan/LSan) reports found in the output of processes the
# tests started; run() turns them into a failing test case.
sanitizer_reports = []
_SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                      "WARNING: AddressSanitizer")


def binary(name):
    """Path of a built program (src/dird/p2p-dird, ...)."""
    for sub in ("src/dird", "src/peerd", "src/p2pctl", "tests", "."):
        p = os.path.join(BUILDDIR, sub, name)
        if os.access(p, os.X_OK):
            return p
    raise FileNotFoundError("%s is not built under %s" % (name, BUILDDIR))


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tempdir(prefix="p2ptest-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _tempdirs.append(d)
    return d


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Process:
    """A process in its own process group; killed with the group at cleanup."""

    def __init__(self, argv, env=None, cwd=None, log=None, stdin=None):
        self.argv = [str(a) for a in argv]
        self.log = log or os.path.join(tempdir("p2plog-"), "out.log")
        self._logf = open(self.log, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(self.argv, stdout=self._logf, stderr=subprocess.STDOUT,
                                     stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                     env=full_env, cwd=cwd, start_new_session=True)
        _processes.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout=10):
        return self.proc.wait(timeout=timeout)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal, wait, then SIGKILL the whole group; returns the exit code."""
        if self.alive():
            try:
                os.kill(self.proc.pid, sig)
                self.proc.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        rc = self.proc.wait()
        # SIGKILL is delivered asynchronously: wait until the group is gone so
        # its ports and files are free when stop() returns.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.01)
        self._logf.close()
        out = self.output()
        for marker in _SANITIZER_MARKERS:
            i = out.find(marker)
            if i >= 0:
                sanitizer_reports.append("%s: %s" % (os.path.basename(self.argv[0]), out[max(0, i - 200):i + 3000]))
                break
        if self in _processes:
            _processes.remove(self)
        return rc


def cleanup():
    for p in list(_processes):
        try:
            p.stop(timeout=3)
        except Exception:  # cleanup must go on whatever happens
            pass
    while _tempdirs:
        shutil.rmtree(_tempdirs.pop(), ignore_errors=True)


atexit.register(cleanup)


def _on_signal(signum, frame):
    cleanup()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


class _TapResult(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.n = 0

    def _line(self, ok, test, extra=""):
        self.n += 1
        name = test.id().split(".", 1)[-1] if hasattr(test, "id") else str(test)
        print("%s %d - %s%s" % ("ok" if ok else "not ok", self.n, name, extra), flush=True)

    @staticmethod
    def _diag(text):
        for line in text.rstrip().splitlines():
            print("# " + line, flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._line(True, test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._line(False, test)
        self._diag("".join(traceback.format_exception(*err)))

    def addError(self, test, err):
        super().addError(test, err)
        self._line(False, test)
        self._diag("".join(traceback.format_exception(*err)))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._line(True, test, " # SKIP " + reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._line(True, test, " # TODO expected failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._line(False, test, " # unexpected success")


def run(module="__main__"):
    """Run the module's TestCases, printing TAP; exit 1 on any failure."""
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[module])
    print("1..%d" % (suite.countTestCases() + 1), flush=True)
    result = _TapResult()
    try:
        suite.run(result)
    finally:
        cleanup()
    # Daemons built with --enable-sanitizers report at exit into their logs.
    result.n += 1
    if sanitizer_reports:
        print("not ok %d - no sanitizer reports from the programs the tests started" % result.n)
        for rep in sanitizer_reports:
            _TapResult._diag(rep)
    else:
        print("ok %d - no sanitizer reports from the programs the tests started" % result.n)
    sys.exit(0 if result.wasSuccessful() and not sanitizer_reports else 1)
