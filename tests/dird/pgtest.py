# SPDX-License-Identifier: MIT
"""A throwaway PostgreSQL server for the p2p-dird tests.

Server() runs Debian's initdb and postgres (package postgresql) in a
temporary directory, listening only on 127.0.0.1 on a free port, with trust
authentication and fsync off (the tests need speed, not durability). As root
(CI) both run as user nobody, because PostgreSQL refuses to run as root. The
server is stopped and its directory removed at cleanup, like every process
the harness starts.

run_module(name) runs one of the dird black-box modules against such a
server: dirdtest.Dird then gives each daemon a fresh database on it.
"""
import glob
import os
import pwd
import signal
import subprocess
import sys

import p2ptest

ENV_URL = "P2P_TEST_POSTGRESQL"


def bindir():
    """The newest PostgreSQL's bin directory, or None when not installed."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                  key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(dirs[-1]) if dirs else None


def _built_with_pg():
    cfg = os.path.join(p2ptest.BUILDDIR, "config.h")
    try:
        with open(cfg) as f:
            return "#define HAVE_POSTGRESQL 1" in f.read()
    except OSError:
        return False


class _Postgres(p2ptest.Process):
    def stop(self, sig=signal.SIGINT, timeout=10):
        # SIGINT is PostgreSQL's fast shutdown: it does not wait for clients.
        return super().stop(sig, timeout)


class Server:
    def __init__(self, durable=False):
        self.bin = bindir()
        if not self.bin:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.dir = p2ptest.tempdir("p2p-pg-")
        self.data = os.path.join(self.dir, "data")
        self.as_user = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                            "--clear-groups", "--"]
        r = subprocess.run(self.as_user + [os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "p2p",
                                           "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
                           capture_output=True, text=True, cwd=self.dir)
        if r.returncode != 0:
            raise RuntimeError("initdb failed:\n" + r.stdout + r.stderr)
        self.port = p2ptest.free_port()
        self.proc = _Postgres(self.as_user + [
            os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
            "-c", "max_connections=300", "-c", "shared_buffers=128MB"] +
            ([] if durable else ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
            cwd=self.dir, log=os.path.join(self.dir, "postgres.log"))
        self.url = "postgresql://p2p@127.0.0.1:%d/" % self.port
        self.ndb = 0
        p2ptest.wait_for(self.ready, timeout=30, what="PostgreSQL on port %d" % self.port)

    def ready(self):
        if not self.proc.alive():
            raise RuntimeError("postgres exited:\n" + self.proc.output())
        r = subprocess.run([os.path.join(self.bin, "pg_isready"), "-q", "-h", "127.0.0.1",
                            "-p", str(self.port)])
        return r.returncode == 0

    def psql(self, sql, db="postgres"):
        r = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-c", sql, self.url + db], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("psql %r failed: %s" % (sql, r.stderr))
        return r.stdout

    def create_database(self):
        """A new empty database; returns its URI."""
        self.ndb += 1
        name = "dird%d" % self.ndb
        self.psql("CREATE DATABASE %s" % name)
        return self.url + name

    def stop(self):
        self.proc.stop()

    def restart(self, down=0.0):
        """Stop the server (fast shutdown: clients are cut off), stay down
        for down seconds, start it again on the same port and data."""
        import time
        argv = self.proc.argv
        self.proc.stop()
        time.sleep(down)
        self.proc = _Postgres(argv, cwd=self.dir, log=os.path.join(self.dir, "postgres.log"))
        p2ptest.wait_for(self.ready, timeout=30, what="PostgreSQL on port %d" % self.port)


_server = None


def server():
    """The one server of this test process, started on first use."""
    global _server
    if _server is None:
        _server = Server()
    return _server


def from_environment():
    """The server run_module() started, when the tests run against PostgreSQL."""
    return server() if os.environ.get(ENV_URL) else None


def run_module(name):
    """Run the black-box module name (e.g. "test_api") with PostgreSQL."""
    if not bindir() or not _built_with_pg():
        print("1..0 # SKIP p2p-dird built without PostgreSQL, or PostgreSQL not installed")
        sys.exit(0)
    os.environ[ENV_URL] = "1"
    module = __import__(name)
    p2ptest.run(module.__name__)
