# SPDX-License-Identifier: MIT
"""Shared pieces of the fault and load tests (tests/robust/): peers that log
in by themselves, a throttling and delaying TCP proxy, memory readings,
and checks for what a test needs from the machine (root, tmpfs, network
namespaces, nftables, tc tbf)."""
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for sub in ("../blackbox", "../dird", "../peerd"):
    p = os.path.normpath(os.path.join(HERE, sub))
    if p not in sys.path:
        sys.path.insert(0, p)

import p2ptest  # noqa: E402
from dirdtest import Dird  # noqa: E402
from test_control import Varlink  # noqa: E402
from test_download import download as peerd_download  # noqa: E402

__all__ = ["p2ptest", "Dird", "Varlink", "Peer", "Proxy", "Background", "download", "rss_kib", "peak_rss_kib",
           "raise_nofile", "need_root", "run_quiet", "memory_env", "sanitized"]

PASSWORD = "pw-robust-0123456789"


def run_quiet(argv, check=True):
    """Run a helper command (ip, nft, tc, mount); return CompletedProcess."""
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(argv), r.stdout.decode(errors="replace")))
    return r


def need_root():
    """None when running as root, else the TAP skip reason."""
    return None if os.geteuid() == 0 else "needs root (CI runs as root)"


def rss_kib(pid):
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid):
    return _status_kib(pid, "VmHWM")


def _status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def sanitized():
    """True for an --enable-sanitizers build (ASan reserves and keeps memory)."""
    with open(p2ptest.binary("p2p-dird"), "rb") as f:
        return b"__asan_init" in f.read()


def memory_env():
    """Environment and a bound factor for a daemon whose memory is measured:
    under ASan a small quarantine (freed memory ASan holds back, 256 MiB by
    default) and twice the bound for its shadow memory and redzones."""
    if not sanitized():
        return {}, 1
    opts = os.environ.get("ASAN_OPTIONS", "")
    opts = (opts + ":" if opts else "") + "quarantine_size_mb=16:thread_local_quarantine_size_kb=256"
    return {"ASAN_OPTIONS": opts}, 2


def raise_nofile(want):
    """Raise this process's (and so its children's) open-file limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Peer:
    """A p2p-peerd logged in by itself (username + password file), so that it
    can re-login on its own; a control connection; its gRPC port may be
    advertised through a proxy (advertise=PORT)."""

    def __init__(self, dird_url, name, files=None, folder=None, advertise=None, ip="127.0.0.1",
                 listen_ip="127.0.0.1", prefix=(), heartbeat=1, chunk_size=65536, register_with=None,
                 extra=(), wrapper=(), wait=20, port=None, env=None):
        self.name = name
        self.base = p2ptest.tempdir("p2p-%s-" % name)
        self.folder = folder or os.path.join(self.base, "files")
        os.makedirs(self.folder, exist_ok=True)
        for fname, data in (files or {}).items():
            with open(os.path.join(self.folder, fname), "wb") as f:
                f.write(data)
        self.pwfile = os.path.join(self.base, "password")
        with open(self.pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        if register_with is not None:
            r = register_with.register(name, PASSWORD)
            assert r.status_code in (201, 409), r.text
        self.sock = os.path.join(self.base, "ctl.sock")
        self.port = port or p2ptest.free_port()
        self.advertised = advertise or self.port
        # No --name: it would read /etc/p2p/peers/NAME.json and use system
        # state directories on a machine where p2p is installed.
        argv = list(wrapper) + [p2ptest.binary("p2p-peerd"), "--username", name,
                                "--state-dir", os.path.join(self.base, "state"),
                                "--password-file", self.pwfile, "--directory", dird_url,
                                "--folder", self.folder, "--listen", "%s:%d" % (listen_ip, self.port),
                                "--port", str(self.advertised), "--ip", ip, "--control-socket", self.sock,
                                "--heartbeat", str(heartbeat), "--chunk-size", str(chunk_size)] + list(extra)
        self.proc = p2ptest.Process(list(prefix) + argv, env=env)
        self.v = p2ptest.wait_for(self._connect, timeout=wait, what="control socket of " + name)

    def _connect(self):
        # The socket file appears at bind(), a moment before listen():
        # connect until it answers.
        if not self.proc.alive():
            raise RuntimeError("p2p-peerd %s exited:\n%s" % (self.name, self.proc.output()))
        try:
            return Varlink(self.sock)
        except (FileNotFoundError, ConnectionRefusedError):
            return None

    def call(self, method, params=None):
        return self.v.call(method, params)

    def logged_in(self):
        st = self.call("Status")
        return "error" not in st and bool(st["parameters"].get("logged_in"))

    def search(self, name):
        r = self.call("Search", {"exact": name})
        if "error" in r:
            return []
        return r["parameters"]["results"]

    def stop(self, sig=None):
        try:
            self.v.close()
        except OSError:
            pass
        return self.proc.stop(sig) if sig else self.proc.stop()


def download(v, name, timeout=60, **kw):
    """test_download's download() with a socket timeout; returns (progress, last message)."""
    v.s.settimeout(timeout)
    return peerd_download(v, name, **kw)


class Background:
    """A download running in a thread; result() waits for its last reply."""

    def __init__(self, peer, name, timeout=120, **kw):
        self.out, self.exc = None, None
        self.t = threading.Thread(target=self._run, args=(peer, name, timeout, kw), daemon=True)
        self.t.start()

    def _run(self, peer, name, timeout, kw):
        try:
            self.out = download(peer.v, name, timeout=timeout, **kw)
        except Exception as e:  # handed to result()
            self.exc = e

    def result(self, timeout=60):
        self.t.join(timeout)
        if self.t.is_alive():
            raise TimeoutError("the download neither finished nor failed within %d s" % timeout)
        if self.exc:
            raise self.exc
        return self.out


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of target: it can add latency to
    each direction (delay, seconds), cap the rate towards the client
    (rate, bytes/s), count the bytes it carried, and cut every connection
    (cut()). One thread per direction; it is for tests, not for speed."""

    def __init__(self, target, delay=0.0, rate=None, listen=("127.0.0.1", 0)):
        self.target = target
        self.delay = delay
        self.rate = rate
        self.bytes_down = 0
        self.lock = threading.Lock()
        self.conns = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(listen)
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(self.target, timeout=5)
                s.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, s]
            threading.Thread(target=self._pump, args=(c, s, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, True), daemon=True).start()

    def _pump(self, src, dst, down):
        t0 = time.monotonic()
        sent = 0
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    break
                if self.delay:
                    time.sleep(self.delay)
                if down and self.rate:
                    sent += len(data)
                    ahead = sent / self.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                dst.sendall(data)
                if down:
                    with self.lock:
                        self.bytes_down += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Reset every open connection (RST, not FIN)."""
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                s.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.ls.close()
        self.cut()


def have(cmd):
    return shutil.which(cmd) is not None
