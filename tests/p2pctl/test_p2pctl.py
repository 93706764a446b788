# SPDX-License-Identifier: MIT
"""p2pctl against a fake control socket: every command, its --json form,
exit codes, the message for each failure, and the terminal behaviour (progress
bar, no-echo password prompt, colours) on a pseudo-terminal."""
import json
import os
import pty
import select
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import p2ptest  # noqa: E402
from fakepeerd import CLOSE, HANG, FakePeerd, error, progress, reply  # noqa: E402

SHA = "ab" * 32
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NOT_LOGGED_IN, EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_VERIFICATION = range(7)


def p2pctl_path():
    return p2ptest.binary("p2pctl")


def run(args, stdin=None, env=None, timeout=30):
    full = dict(os.environ)
    full.pop("NO_COLOR", None)
    full.update(env or {})
    p = subprocess.run([p2pctl_path()] + [str(a) for a in args], input=stdin, capture_output=True,
                       env=full, timeout=timeout)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    for marker in p2ptest._SANITIZER_MARKERS:
        if marker in err:
            p2ptest.sanitizer_reports.append("p2pctl: " + err)
    return p.returncode, out, err


def run_pty(args, env=None, feed=None, timeout=20):
    """Run p2pctl with a pseudo-terminal as its controlling terminal and
    stdin/stdout/stderr. feed: list of (prompt to wait for, bytes to type).
    Returns (exit status, everything the terminal showed)."""
    full = dict(os.environ)
    full.pop("NO_COLOR", None)
    full["TERM"] = "xterm"
    full.update(env or {})
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(p2pctl_path(), [p2pctl_path()] + [str(a) for a in args], full)
        finally:
            os._exit(127)
    shown = b""
    feed = list(feed or [])
    try:
        while True:
            r, _, _ = select.select([fd], [], [], timeout)
            if not r:
                raise TimeoutError("p2pctl on a pty said nothing for %ds: %r" % (timeout, shown))
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            shown += data
            while feed and feed[0][0] in shown:
                os.write(fd, feed.pop(0)[1])
                shown = shown.replace(b"\0", b"")
    except BaseException:
        os.kill(pid, 9)
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace")


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = p2ptest.tempdir("p2pctl-")
        self.sock = os.path.join(self.dir, "peer1.sock")
        self.fake = FakePeerd(self.sock)
        self.addCleanup(self.fake.close)

    def ctl(self, *args, **kw):
        return run(["-s", self.sock] + list(args), **kw)


class TestUsage(unittest.TestCase):
    def test_version_and_help(self):
        rc, out, _ = run(["--version"])
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^p2pctl \d+\.\d+")
        rc, out, _ = run(["--help"])
        self.assertEqual(rc, 0)
        for cmd in ("register", "login", "logout", "status", "index", "ls", "search", "download",
                    "transfers", "cancel"):
            self.assertIn(cmd, out)
            rc, out2, _ = run([cmd, "--help"])
            self.assertEqual(rc, 0, cmd)
            self.assertIn("Usage: p2pctl", out2)
            self.assertIn(cmd, out2)

    def test_usage_errors(self):
        cases = [
            ([], "Usage"),
            (["frobnicate"], "unknown command 'frobnicate'"),
            (["--bogus", "status"], "unknown option"),
            (["-s", "/x.sock", "-p", "peer1", "status"], "only one of -s SOCKET and -p PEER"),
            (["-p", "bad/name", "status"], "invalid peer name"),
            (["-t", "0", "status"], "--timeout"),
            (["-t", "abc", "status"], "--timeout"),
            (["-s", "/x.sock", "status", "extra"], "unexpected argument 'extra'"),
            (["-s", "/x.sock", "search"], "missing argument"),
            (["-s", "/x.sock", "search", "a", "--limit", "0"], "--limit"),
            (["-s", "/x.sock", "search", "a", "--limit", "1001"], "--limit"),
            (["-s", "/x.sock", "search", "a", "--limit", "ten"], "--limit"),
            (["-s", "/x.sock", "search", "a", "--offset", "-1"], "--offset"),
            (["-s", "/x.sock", "search", "--exact", "a/b"], "invalid file name"),
            (["-s", "/x.sock", "search", "--exact", "x", "more"], "unexpected argument"),
            (["-s", "/x.sock", "search", ""], "1 to 255 bytes"),
            (["-s", "/x.sock", "download"], "missing argument"),
            (["-s", "/x.sock", "download", "../etc/passwd"], "invalid file name"),
            (["-s", "/x.sock", "download", ".."], "invalid file name"),
            (["-s", "/x.sock", "download", "a", "--from", "no such"], "invalid peer name"),
            (["-s", "/x.sock", "download", "a", "--to", "/nonexistent/dir"], "cannot use --to"),
            (["-s", "/x.sock", "download", "a", "--to", "/etc/passwd"], "not a directory"),
            (["-s", "/x.sock", "download", "a", "--bogus"], "unknown option"),
            (["-s", "/x.sock", "cancel"], "missing argument"),
            (["-s", "/x.sock", "cancel", "1;2"], "invalid transfer id"),
            (["-s", "/x.sock", "login", "bad name", "--password-stdin"], "invalid user name"),
            (["-s", "/x.sock", "login", "u", "--password-stdin", "--password-file", "/f"], "only one of"),
            (["-s", "/x.sock", "login", "u", "--password-file", "/nonexistent"], "cannot read the password file"),
            (["-s", "/x" * 80 + ".sock", "status"], "too long"),
        ]
        for args, msg in cases:
            rc, out, err = run(args, stdin=b"")
            self.assertEqual(rc, EXIT_USAGE, (args, err))
            self.assertIn(msg, err, args)

    def test_no_terminal_for_password(self):
        rc, _, err = run(["-s", "/x.sock", "login", "alice"], stdin=b"pw\n")
        self.assertEqual(rc, EXIT_USAGE)
        self.assertIn("--password-stdin", err)


class TestJsonFailures(unittest.TestCase):
    """With --json every failure prints one JSON error object on stdout,
    also before any reply (issue 15)."""

    def check(self, argv, code, error, text):
        rc, out, err = run(argv)
        self.assertEqual(rc, code, err)
        doc = json.loads(out)
        self.assertEqual(doc["error"], error)
        self.assertEqual(doc["parameters"]["exit_status"], code)
        self.assertIn(text, doc["parameters"]["message"])
        self.assertIn(text, err)

    def test_before_any_reply(self):
        d = p2ptest.tempdir()
        sock = os.path.join(d, "peer7.sock")
        self.check(["--json", "-s", sock, "status"], EXIT_UNREACHABLE, "p2pctl.PeerdUnreachable",
                   "cannot reach peerd at %s" % sock)
        self.check(["-s", sock, "status", "--json"], EXIT_UNREACHABLE, "p2pctl.PeerdUnreachable", "cannot reach")
        self.check(["--json", "bogus"], EXIT_USAGE, "p2pctl.Usage", "unknown command 'bogus'")
        self.check(["-s", sock, "search", "--json", "--limit", "0", "x"], EXIT_USAGE, "p2pctl.Usage", "--limit")
        self.check(["-s", sock, "--json", "cancel"], EXIT_USAGE, "p2pctl.Usage", "missing argument")

    def test_success_prints_no_error(self):
        rc, out, _ = run(["--json", "--version"])
        self.assertEqual(rc, 0)
        self.assertNotIn("error", out)


class TestReach(unittest.TestCase):
    def test_no_socket(self):
        d = p2ptest.tempdir()
        rc, _, err = run(["-s", os.path.join(d, "peer7.sock"), "status"])
        self.assertEqual(rc, EXIT_UNREACHABLE)
        self.assertIn("cannot reach peerd at %s/peer7.sock" % d, err)
        self.assertIn("is p2p-peerd@peer7 running? systemctl start p2p-peerd@peer7", err)

    def test_refused(self):
        import socket
        d = p2ptest.tempdir()
        path = os.path.join(d, "peer8.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)  # bound, not listening: connection refused
        try:
            rc, _, err = run(["-s", path, "status"])
        finally:
            s.close()
        self.assertEqual(rc, EXIT_UNREACHABLE)
        self.assertIn("Connection refused", err)

    def test_peer_name_and_discovery(self):
        d = p2ptest.tempdir()
        env = {"P2P_RUNDIR": d}
        rc, _, err = run(["status"], env=env)
        self.assertEqual(rc, EXIT_UNREACHABLE)
        self.assertIn("no peer control socket in " + d, err)
        a = FakePeerd(os.path.join(d, "alpha.sock"))
        try:
            a.on("Status", reply(peer="alpha", logged_in=False, username=None))
            rc, out, err = run(["-p", "alpha", "status"], env=env)
            self.assertEqual(rc, 0, err)
            self.assertIn("alpha", out)
            rc, out, err = run(["status"], env=env)  # the only one: found by itself
            self.assertEqual(rc, 0, err)
            self.assertIn("alpha", out)
            rc, _, err = run(["-p", "beta", "status"], env=env)
            self.assertEqual(rc, EXIT_UNREACHABLE)
            self.assertIn("p2p-peerd@beta", err)
            b = FakePeerd(os.path.join(d, "beta.sock"))
            try:
                rc, _, err = run(["status"], env=env)
                self.assertEqual(rc, EXIT_USAGE)
                self.assertIn("pick one with -p NAME", err)
            finally:
                b.close()
        finally:
            a.close()


STATUS = dict(version="0.1.0", peer="peer1", username="alice", logged_in=True,
              directory={"url": "http://127.0.0.1:6970", "reachable": True},
              listen="0.0.0.0:50001", folder="/srv/p2p/peer1", shared_files=3,
              shared_bytes=3 * 1024 * 1024, transfers_active=1)


class TestCommands(Base):
    def test_status(self):
        self.fake.on("Status", reply(**STATUS))
        rc, out, err = self.ctl("status")
        self.assertEqual(rc, 0, err)
        self.assertIn("alice (logged in)", out)
        self.assertIn("http://127.0.0.1:6970 (reachable)", out)
        self.assertIn("3 files, 3.0 MiB", out)
        self.assertIn("1 active", out)
        self.assertNotIn("\033[", out)  # not a terminal: no colours
        self.assertEqual(self.fake.last(), {"method": "io.p2p.Peer.Status", "parameters": {}})
        rc, out, _ = self.ctl("status", "--json")
        self.assertEqual(rc, 0)
        self.assertEqual(json.loads(out), STATUS)
        rc, out, _ = self.ctl("--json", "status")
        self.assertEqual(json.loads(out), STATUS)

    def test_status_logged_out(self):
        st = dict(STATUS, username=None, logged_in=False, directory={"url": "http://d", "reachable": False})
        self.fake.on("Status", reply(**st))
        rc, out, _ = self.ctl("status")
        self.assertEqual(rc, 0)
        self.assertIn("not logged in", out)
        self.assertIn("unreachable", out)

    def test_register_and_login_stdin(self):
        self.fake.on("Register", reply(username="alice"))
        self.fake.on("Login", reply(username="alice", expires_at=2000000000))
        rc, out, err = self.ctl("register", "alice", "--password-stdin", stdin=b"s3cret pw\n")
        self.assertEqual(rc, 0, err)
        self.assertIn("Registered alice", out)
        self.assertEqual(self.fake.last(), {"method": "io.p2p.Peer.Register",
                                            "parameters": {"username": "alice", "password": "s3cret pw"}})
        rc, out, err = self.ctl("login", "alice", "--password-stdin", stdin=b"s3cret pw\r\n")
        self.assertEqual(rc, 0, err)
        self.assertIn("Logged in as alice", out)
        self.assertEqual(self.fake.last()["parameters"]["password"], "s3cret pw")
        rc, out, _ = self.ctl("login", "alice", "--password-stdin", "--json", stdin=b"pw")
        self.assertEqual(json.loads(out), {"username": "alice", "expires_at": 2000000000})
        rc, out, _ = self.ctl("-q", "login", "alice", "--password-stdin", stdin=b"pw")
        self.assertEqual((rc, out), (0, ""))

    def test_password_file(self):
        f = os.path.join(self.dir, "pw")
        with open(f, "w") as fh:
            fh.write("from-file\nsecond line\n")
        self.fake.on("Login", reply(username="bob"))
        rc, _, err = self.ctl("login", "bob", "--password-file", f)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.fake.last()["parameters"], {"username": "bob", "password": "from-file"})

    def test_bad_passwords(self):
        self.fake.on("Login", reply(username="bob"))
        for data, msg in ((b"", "empty"), (b"\n", "empty"), (b"x" * 2000, "longer than"),
                          (b"\xff\xfe\n", "not valid UTF-8")):
            rc, _, err = self.ctl("login", "bob", "--password-stdin", stdin=data)
            self.assertEqual(rc, EXIT_USAGE, data)
            self.assertIn(msg, err)
        self.assertEqual(self.fake.calls, [])  # nothing reached peerd

    def test_simple_commands(self):
        self.fake.on("Logout", reply())
        self.fake.on("Index", reply(indexed=7))
        rc, out, _ = self.ctl("logout")
        self.assertEqual((rc, out), (0, "Logged out.\n"))
        rc, out, _ = self.ctl("logout", "--json")
        self.assertEqual(json.loads(out), {})
        rc, out, _ = self.ctl("index")
        self.assertEqual((rc, out), (0, "Indexed 7 files.\n"))
        rc, out, _ = self.ctl("index", "--json")
        self.assertEqual(json.loads(out), {"indexed": 7})

    def test_ls(self):
        files = [{"name": "a-long-name.iso", "size": 5 * 1024 ** 3, "sha256": SHA, "mtime": 1700000000},
                 {"name": "b.txt", "size": 12, "sha256": "cd" * 32, "mtime": 1700000000},
                 {"name": "évil\x1b[31m", "size": 1536, "sha256": SHA, "mtime": 0}]
        self.fake.on("ListShared", reply(files=files))
        rc, out, _ = self.ctl("ls")
        self.assertEqual(rc, 0)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("NAME"))
        self.assertIn("5.0 GiB", lines[1])
        self.assertIn("abababababab", lines[1])
        self.assertIn("12 B", lines[2])
        self.assertIn("évil?[31m", lines[3])  # no escape sequence reaches the terminal
        self.assertNotIn("\x1b", out)
        # columns line up: SIZE is right-aligned at the same column
        self.assertEqual(lines[1].index("GiB") + 3, lines[2].index(" B") + 2)
        self.assertIn("3 files shared", out)
        rc, out, _ = self.ctl("ls", "--json")
        self.assertEqual(json.loads(out), {"files": files})
        rc, out, _ = self.ctl("ls", "-q")
        self.assertEqual(len(out.splitlines()), 3)  # no header, no footer

    def test_search(self):
        results = [{"peer": "p2", "ip": "127.0.0.1", "port": 50002, "name": "song.mp3", "size": 4096,
                    "sha256": SHA}]
        self.fake.on("Search", reply(results=results, total=9))
        rc, out, err = self.ctl("search", "SONG")
        self.assertEqual(rc, 0, err)
        self.assertIn("song.mp3", out)
        self.assertIn("127.0.0.1:50002", out)
        self.assertIn("4.0 KiB", out)
        self.assertIn("1 of 9 results shown", out)
        self.assertEqual(self.fake.last()["parameters"], {"query": "SONG", "limit": 50})
        rc, out, _ = self.ctl("search", "--exact", "song.mp3", "--limit", "5", "--offset", "2", "--json")
        self.assertEqual(self.fake.last()["parameters"], {"exact": "song.mp3", "limit": 5, "offset": 2})
        self.assertEqual(json.loads(out), {"results": results, "total": 9})

    def test_search_empty(self):
        self.fake.on("Search", reply(results=[], total=0))
        rc, out, err = self.ctl("search", "nothing")
        self.assertEqual((rc, out), (0, ""))
        self.assertIn("No online peer shares a matching file", err)

    def test_download_plain(self):
        self.fake.on("Download",
                     progress(id=1, name="f.bin", state="running", size=1000, received=0, rate=0, sources=1),
                     progress(id=1, name="f.bin", state="running", size=1000, received=500, rate=100, sources=2),
                     reply(id=1, name="f.bin", state="done", path="/srv/f.bin", size=1000, sha256=SHA,
                           seconds=2))
        rc, out, err = self.ctl("download", "f.bin", "--from", "peer2", "--to", ".")
        self.assertEqual(rc, 0, err)
        call = self.fake.last()
        self.assertTrue(call["more"])
        self.assertEqual(call["parameters"], {"name": "f.bin", "from": "peer2", "to": os.getcwd()})
        self.assertIn("f.bin: 0%, 0 B of 1000 B", err)  # a plain progress line, not a bar
        self.assertNotIn("\r", err)
        self.assertIn("Downloaded /srv/f.bin (1000 B in 2s", out)

    def test_download_json(self):
        self.fake.on("Download",
                     progress(id=1, name="f", state="running", size=10, received=5, rate=5, sources=1),
                     reply(id=1, name="f", state="done", path="/p/f", size=10, sha256=SHA, seconds=1))
        rc, out, err = self.ctl("download", "f", "--json")
        self.assertEqual(rc, 0, err)
        events = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([e["state"] for e in events], ["running", "done"])
        self.assertEqual(err, "")

    def test_download_force(self):
        self.fake.on("Download", reply(id=1, name="f", state="done", path="/p/f", size=10, sha256=SHA, seconds=1))
        rc, _, err = self.ctl("download", "f", "--force")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.fake.last()["parameters"], {"name": "f", "force": True})

    def test_download_failures(self):
        for err_reply, code, msg in (
                (error("io.p2p.Peer.NotFound", name="f"), EXIT_NOT_FOUND, "no online peer shares f"),
                (error("io.p2p.Peer.VerificationFailed", name="f", message="sha256 mismatch"),
                 EXIT_VERIFICATION, "f failed verification: sha256 mismatch; nothing was saved under its name"),
                (error("io.p2p.Peer.TransferFailed", name="f", message="all sources gone", received=77),
                 EXIT_FAIL, "failed after 77 bytes: all sources gone; run the same command again to resume"),
                # peerd says when trying again cannot help (issue 14).
                (error("io.p2p.Peer.TransferFailed", name="f", message="busy", received=0, retry=False),
                 EXIT_FAIL, "failed after 0 bytes: busy\n"),
                (error("io.p2p.Peer.FileExists", name="f", message="/srv/f exists with other content; it is kept"),
                 EXIT_FAIL, "/srv/f exists with other content; it is kept"),
                (error("io.p2p.Peer.NotLoggedIn"), EXIT_NOT_LOGGED_IN, "p2pctl login USER"),
                (error("io.p2p.Peer.Cancelled", id="3"), EXIT_FAIL, "transfer 3 was cancelled")):
            self.fake.on("Download", progress(id=3, name="f", state="running", size=10, received=1, rate=1,
                                              sources=1), err_reply)
            rc, out, err = self.ctl("download", "f")
            self.assertEqual(rc, code, err)
            self.assertIn(msg, err)
            rc, out, _ = self.ctl("download", "f", "--json")
            self.assertEqual(rc, code)
            self.assertEqual(json.loads(out.splitlines()[-1])["error"], err_reply["error"])

    def test_transfers_and_cancel(self):
        t = [{"id": 4, "name": "big.iso", "state": "running", "size": 2048, "received": 1024, "rate": 512,
              "sources": 3}]
        self.fake.on("Transfers", reply(transfers=t))
        self.fake.on("Cancel", reply())
        rc, out, _ = self.ctl("transfers")
        self.assertEqual(rc, 0)
        self.assertIn("big.iso", out)
        self.assertIn("50%", out)
        self.assertIn("512 B/s", out)
        rc, out, _ = self.ctl("transfers", "--json")
        self.assertEqual(json.loads(out), {"transfers": t})
        rc, out, _ = self.ctl("cancel", "4")
        self.assertEqual((rc, out), (0, "Cancelled transfer 4.\n"))
        self.assertEqual(self.fake.last()["parameters"], {"id": "4"})
        self.fake.on("Cancel", error("io.p2p.Peer.NotFound", id=9))
        rc, _, err = self.ctl("cancel", "9")
        self.assertEqual(rc, EXIT_NOT_FOUND)
        self.assertIn("no running transfer 9: see 'p2pctl transfers'", err)

    def test_set_rates(self):
        self.fake.on("SetRates", reply(upload_rate=1048576, download_rate=0))
        rc, out, err = self.ctl("set", "upload-rate", "1M")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.fake.last(), {"method": "io.p2p.Peer.SetRates", "parameters": {"upload_rate": 1048576}})
        self.assertEqual(out, "Upload rate: 1.0 MiB/s; download rate: unlimited (until the peer restarts).\n")
        self.fake.on("SetRates", reply(upload_rate=0, download_rate=2560))
        rc, out, err = self.ctl("set", "upload-rate", "unlimited", "download-rate", "2560")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.fake.last()["parameters"], {"upload_rate": 0, "download_rate": 2560})
        self.assertIn("download rate: 2.5 KiB/s", out)
        rc, out, _ = self.ctl("set", "download-rate", "2560", "--json")
        self.assertEqual(json.loads(out), {"upload_rate": 0, "download_rate": 2560})
        n = len(self.fake.calls)
        for args, msg in ((["upload-rate"], "missing argument"),
                          (["upload-rate", "1", "download-rate"], "needs a value"),
                          (["speed", "1"], "unknown setting 'speed'"),
                          (["upload-rate", "-1"], "unknown option -1"),
                          (["upload-rate", "x1"], "is not a rate"),
                          (["upload-rate", "1.5M"], "is not a rate"),
                          (["upload-rate", "2T"], "is not a rate"),
                          (["download-rate", "1025G"], "is not a rate"),
                          (["upload-rate", "1", "upload-rate", "2"], "given twice"),
                          (["upload-rate", "1", "download-rate", "2", "x"], "unexpected argument")):
            rc, _, err = self.ctl("set", *args)
            self.assertEqual(rc, EXIT_USAGE, (args, err))
            self.assertIn(msg, err, args)
        self.assertEqual(len(self.fake.calls), n)  # nothing reached peerd
        self.fake.on("SetRates", error("org.varlink.service.InvalidParameter", parameter="upload_rate"))
        rc, _, err = self.ctl("set", "upload-rate", "5")
        self.assertEqual(rc, EXIT_USAGE, err)
        self.assertIn("upload_rate", err)

    def test_status_traffic_and_rates(self):
        self.fake.on("Status", reply(**dict(STATUS, bytes_up=3 * 1024 * 1024, bytes_down=512,
                                            upload_rate=1048576, download_rate=0)))
        rc, out, err = self.ctl("status")
        self.assertEqual(rc, 0, err)
        self.assertIn("Traffic:    3.0 MiB up, 512 B down since start\n", out)
        self.assertIn("Rates:      up 1.0 MiB/s, down unlimited\n", out)


class TestErrors(Base):
    def test_each_error(self):
        cases = [
            ("io.p2p.Peer.NotLoggedIn", {}, EXIT_NOT_LOGGED_IN, "not logged in: run 'p2pctl login USER' first"),
            ("io.p2p.Peer.AuthenticationFailed", {"message": "bad password"}, EXIT_FAIL,
             "wrong user name or password"),
            ("io.p2p.Peer.UserExists", {"username": "alice"}, EXIT_FAIL, "user alice already exists"),
            ("io.p2p.Peer.RegistrationClosed", {}, EXIT_FAIL, "ask its operator"),
            ("io.p2p.Peer.RateLimited", {"retry_after": 12}, EXIT_FAIL, "try again in 12 s"),
            ("io.p2p.Peer.DirectoryUnreachable", {"url": "http://d:6970", "message": "connection refused"},
             EXIT_FAIL, "cannot reach the directory at http://d:6970: connection refused; is p2p-dird running"),
            ("io.p2p.Peer.PermissionDenied", {}, EXIT_FAIL, "usermod -aG p2p"),
            ("io.p2p.Peer.Busy", {"message": "too many control connections"}, EXIT_FAIL,
             "is busy (too many control connections): try again"),
            ("org.varlink.service.MethodNotFound", {"method": "io.p2p.Peer.Index"}, EXIT_FAIL,
             "does not know io.p2p.Peer.Index"),
            ("org.varlink.service.InvalidParameter", {"parameter": "name"}, EXIT_USAGE,
             "refused the parameter \"name\""),
            ("com.example.Weird", {"x": 1}, EXIT_FAIL, "peerd answered com.example.Weird: {\"x\":1}"),
        ]
        for name, params, code, msg in cases:
            self.fake.on("Index", error(name, **params))
            rc, out, err = self.ctl("index")
            self.assertEqual(rc, code, name)
            self.assertIn(msg, err, name)
            self.assertEqual(out, "")
            rc, out, err = self.ctl("index", "--json")
            self.assertEqual(rc, code)
            self.assertEqual(json.loads(out), {"error": name, "parameters": params})

    def test_wrong_password_said_once(self):
        self.fake.on("Login", error("io.p2p.Peer.AuthenticationFailed", message="wrong user name or password"))
        rc, _, err = self.ctl("login", "alice", "--password-stdin", stdin=b"pw\n")
        self.assertEqual(rc, EXIT_FAIL)
        self.assertEqual(err.count("wrong user name or password"), 1, err)

    def test_unknown_method(self):
        rc, _, err = self.ctl("transfers")  # nothing scripted: MethodNotFound
        self.assertEqual(rc, EXIT_FAIL)
        self.assertIn("same version", err)

    def test_malformed_replies(self):
        for raw, msg in ((b"garbage", "not valid JSON"), (b"[1]", "not a JSON object"),
                         (b'{"error":7}', "\"error\" is not a string"),
                         (b'{"parameters":{},"continues":"no"}', "\"continues\" is not a boolean"),
                         (b'{"parameters":"x"}', "\"parameters\" is not an object"),
                         (b'{"parameters":{"s":"\xff"}}', "not valid UTF-8")):
            self.fake.on("Index", raw)
            rc, _, err = self.ctl("index")
            self.assertEqual(rc, EXIT_FAIL, raw)
            self.assertIn("sent a malformed reply (", err)
            self.assertIn(msg, err)

    def test_closed_and_silent(self):
        self.fake.on("Status", CLOSE)
        rc, _, err = self.ctl("status")
        self.assertEqual(rc, EXIT_UNREACHABLE)
        self.assertIn("closed the connection: see journalctl -u p2p-peerd@peer1", err)
        self.fake.on("Status", HANG)
        rc, _, err = self.ctl("-t", "1", "status")
        self.assertEqual(rc, EXIT_UNREACHABLE)
        self.assertIn("did not answer within 1 s", err)


class TestTerminal(Base):
    def test_progress_bar(self):
        self.fake.on("Download",
                     progress(id=1, name="movie.mkv", state="running", size=4 * 1024 ** 2,
                              received=1024 ** 2, rate=1024 ** 2, sources=2),
                     reply(id=1, name="movie.mkv", state="done", path="/d/movie.mkv", size=4 * 1024 ** 2,
                           sha256=SHA, seconds=4))
        rc, shown = run_pty(["-s", self.sock, "download", "movie.mkv"])
        self.assertEqual(rc, 0, shown)
        self.assertIn("\r\033[K", shown)
        self.assertIn("movie.mkv [", shown)
        self.assertIn(" 25% 1.0 MiB/4.0 MiB 1.0 MiB/s ETA 3s, 2 sources", shown)
        self.assertIn("Downloaded /d/movie.mkv", shown)

    def test_ctrl_c_cancels_download(self):
        self.fake.on("Download", progress(id=7, name="big.iso", state="running", size=100, received=10, rate=5,
                                          sources=1), HANG)
        self.fake.on("Cancel", reply())
        rc, shown = run_pty(["-s", self.sock, "download", "big.iso"], feed=[(b"1 source", b"\x03")])
        self.assertEqual(rc, 130, shown)
        self.assertIn("interrupted: cancelled transfer 7; run the same command again to resume", shown)
        self.assertEqual(self.fake.last(), {"method": "io.p2p.Peer.Cancel", "parameters": {"id": "7"}})

    def test_no_echo_prompt(self):
        self.fake.on("Login", reply(username="carol"))
        rc, shown = run_pty(["-s", self.sock, "login"],
                            feed=[(b"User name: ", b"carol\n"), (b"Password for carol: ", b"hidden-pw\n")])
        self.assertEqual(rc, 0, shown)
        self.assertIn("carol", shown)  # the user name is echoed
        self.assertNotIn("hidden-pw", shown)  # the password is not
        self.assertEqual(self.fake.last()["parameters"], {"username": "carol", "password": "hidden-pw"})

    def test_register_asks_twice(self):
        self.fake.on("Register", reply(username="dave"))
        rc, shown = run_pty(["-s", self.sock, "register", "dave"],
                            feed=[(b"Password for dave: ", b"one\n"), (b"Repeat password: ", b"two\n")])
        self.assertEqual(rc, EXIT_USAGE, shown)
        self.assertIn("do not match", shown)
        self.assertEqual(self.fake.calls, [])
        rc, shown = run_pty(["-s", self.sock, "register", "dave"],
                            feed=[(b"Password for dave: ", b"same\n"), (b"Repeat password: ", b"same\n")])
        self.assertEqual(rc, 0, shown)
        self.assertEqual(self.fake.last()["parameters"]["password"], "same")

    def test_ctrl_c_at_prompt_restores_echo(self):
        rc, shown = run_pty(["-s", self.sock, "login", "erin"], feed=[(b"Password for erin: ", b"\x03")])
        self.assertEqual(rc, EXIT_FAIL, shown)
        self.assertIn("cancelled", shown)
        self.assertEqual(self.fake.calls, [])

    def test_colours(self):
        self.fake.on("Status", reply(**STATUS))
        rc, shown = run_pty(["-s", self.sock, "status"])
        self.assertEqual(rc, 0)
        self.assertIn("\033[32mlogged in\033[0m", shown)
        rc, shown = run_pty(["-s", self.sock, "status"], env={"NO_COLOR": "1"})
        self.assertEqual(rc, 0)
        self.assertNotIn("\033[", shown)
        self.assertIn("logged in", shown)


class TestCompletion(unittest.TestCase):
    def complete(self, *words, env=None):
        script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _p2pctl; '
                  'printf "%s\\n" "${COMPREPLY[@]}"')
        full = dict(os.environ)
        full.update(env or {})
        p = subprocess.run(["bash", "-c", script, "bash", os.path.join(p2ptest.SRCDIR, "completion", "p2pctl.bash"),
                            "p2pctl"] + list(words), capture_output=True, env=full, timeout=30)
        self.assertEqual(p.stderr, b"")
        return p.stdout.decode().split()

    def test_completion(self):
        self.assertEqual(sorted(self.complete("se")), ["search", "set"])
        self.assertEqual(self.complete("set", "up"), ["upload-rate"])
        self.assertEqual(self.complete("set", "upload-rate", "un"), ["unlimited"])
        self.assertEqual(self.complete("set", "upload-rate", "1M", "d"), ["download-rate"])
        self.assertIn("transfers", self.complete(""))
        self.assertEqual(self.complete("-s", "x.sock", "do"), ["download"])
        self.assertEqual(sorted(self.complete("download", "f", "--")),
                         ["--force", "--from", "--help", "--json", "--quiet", "--to"])
        self.assertEqual(self.complete("login", "--password-"), ["--password-stdin", "--password-file"])
        self.assertIn("--version", self.complete("--"))
        d = p2ptest.tempdir()
        fake = FakePeerd(os.path.join(d, "peer5.sock"))
        try:
            self.assertEqual(self.complete("-p", "pe", env={"P2P_RUNDIR": d}), ["peer5"])
        finally:
            fake.close()


if __name__ == "__main__":
    p2ptest.run()
