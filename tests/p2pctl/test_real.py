# SPDX-License-Identifier: MIT
"""p2pctl driving a real p2p-peerd (and a real p2p-dird): the quickstart
flow, every command the daemon answers, --json forms, exit codes and the
messages users see when something is wrong."""
import json
import os
import subprocess
import unittest

import p2ptest
from dirdtest import Dird

EXIT_FAIL, EXIT_USAGE, EXIT_NOT_LOGGED_IN, EXIT_NOT_FOUND, EXIT_UNREACHABLE = 1, 2, 3, 4, 5


def ctl(sock, *args, stdin=None):
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    p = subprocess.run([p2ptest.binary("p2pctl"), "-s", sock] + [str(a) for a in args], input=stdin,
                       capture_output=True, env=env, timeout=60)
    err = p.stderr.decode("utf-8", "replace")
    for marker in p2ptest._SANITIZER_MARKERS:
        if marker in err:
            p2ptest.sanitizer_reports.append("p2pctl: " + err)
    return p.returncode, p.stdout.decode("utf-8", "replace"), err


class RealPeer:
    def __init__(self, name, dird_url, files):
        self.dir = p2ptest.tempdir("p2pctl-peer-")
        self.folder = os.path.join(self.dir, "share")
        os.mkdir(self.folder)
        for fname, data in files.items():
            with open(os.path.join(self.folder, fname), "wb") as f:
                f.write(data)
        self.sock = os.path.join(self.dir, name + ".sock")
        self.port = p2ptest.free_port()
        state = os.path.join(self.dir, "state")
        os.mkdir(state)
        self.proc = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--name", name,
                                     "--listen", "127.0.0.1:%d" % self.port, "--ip", "127.0.0.1",
                                     "--port", self.port, "--directory", dird_url,
                                     "--folder", self.folder, "--state-dir", state,
                                     "--control-socket", self.sock])
        p2ptest.wait_for(self.ready, what="p2p-peerd control socket " + self.sock)

    def ready(self):
        if not self.proc.alive():
            raise RuntimeError("p2p-peerd exited:\n" + self.proc.output())
        return os.path.exists(self.sock)


class Real(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Dird()
        cls.a = RealPeer("alpha", cls.d.url, {"song.mp3": b"la" * 5000, "notes.txt": b"hello\n"})
        cls.b = RealPeer("beta", cls.d.url, {"song-live.mp3": b"x" * 100})

    def test_1_flow(self):
        a, b = self.a.sock, self.b.sock
        rc, out, err = ctl(a, "status")
        self.assertEqual(rc, 0, err)
        self.assertIn("not logged in", out)
        self.assertIn("(reachable)", out)
        rc, _, err = ctl(a, "search", "song")
        self.assertEqual(rc, EXIT_NOT_LOGGED_IN, err)
        self.assertIn("not logged in: run 'p2pctl login USER' first", err)

        rc, out, err = ctl(a, "register", "alice", "--password-stdin", stdin=b"alice-pw\n")
        self.assertEqual(rc, 0, err)
        self.assertIn("Registered alice", out)
        rc, _, err = ctl(a, "register", "alice", "--password-stdin", stdin=b"other\n")
        self.assertEqual(rc, EXIT_FAIL)
        self.assertIn("user alice already exists", err)
        rc, _, err = ctl(a, "login", "alice", "--password-stdin", stdin=b"wrong\n")
        self.assertEqual(rc, EXIT_FAIL)
        self.assertIn("wrong user name or password", err)
        rc, out, err = ctl(a, "login", "alice", "--password-stdin", stdin=b"alice-pw\n")
        self.assertEqual(rc, 0, err)
        self.assertIn("Logged in as alice", out)
        rc, out, err = ctl(b, "register", "bob", "--password-stdin", stdin=b"bob-pw\n")
        self.assertEqual(rc, 0, err)
        rc, out, err = ctl(b, "--json", "login", "bob", "--password-stdin", stdin=b"bob-pw\n")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["username"], "bob")

        rc, out, err = ctl(a, "status", "--json")
        self.assertEqual(rc, 0, err)
        st = json.loads(out)
        self.assertTrue(st["logged_in"])
        self.assertEqual(st["username"], "alice")
        self.assertEqual(st["shared_files"], 2)
        self.assertTrue(st["directory"]["reachable"])

        rc, out, err = ctl(a, "index")
        self.assertEqual((rc, out), (0, "Indexed 2 files.\n"), err)
        rc, out, err = ctl(a, "index", "--json")
        self.assertEqual(json.loads(out), {"indexed": 2})
        rc, out, err = ctl(a, "ls")
        self.assertEqual(rc, 0, err)
        self.assertIn("song.mp3", out)
        self.assertIn("9.8 KiB", out)
        rc, out, _ = ctl(a, "ls", "--json")
        names = sorted(f["name"] for f in json.loads(out)["files"])
        self.assertEqual(names, ["notes.txt", "song.mp3"])

        rc, out, err = ctl(b, "search", "SONG")
        self.assertEqual(rc, 0, err)
        self.assertIn("song.mp3", out)
        self.assertIn("song-live.mp3", out)
        rc, out, _ = ctl(b, "search", "--exact", "song.mp3", "--json")
        res = json.loads(out)["results"]
        self.assertEqual([(r["name"], r["peer"], r["size"]) for r in res], [("song.mp3", "alice", 10000)])
        rc, out, _ = ctl(b, "search", "song", "--limit", "1", "--json")
        self.assertEqual(len(json.loads(out)["results"]), 1)
        rc, out, err = ctl(b, "search", "no-such-thing")
        self.assertEqual((rc, out), (0, ""))

        rc, out, err = ctl(a, "transfers", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["transfers"], [])
        rc, _, err = ctl(a, "cancel", "42")
        self.assertEqual(rc, EXIT_NOT_FOUND)
        self.assertIn("no running transfer 42", err)

        # download into another directory, then into the shared folder
        dest = p2ptest.tempdir("p2pctl-dest-")
        rc, out, err = ctl(b, "download", "notes.txt", "--to", dest)
        self.assertEqual(rc, 0, err)
        self.assertIn("Downloaded %s/notes.txt" % dest, out)
        self.assertIn("SHA-256 verified", out)
        with open(os.path.join(dest, "notes.txt"), "rb") as f:
            self.assertEqual(f.read(), b"hello\n")
        rc, out, err = ctl(b, "download", "song.mp3", "--from", "alice", "--json")
        self.assertEqual(rc, 0, err)
        events = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(events[-1]["state"], "done")
        self.assertEqual(events[-1]["size"], 10000)
        self.assertEqual(events[-1]["path"], os.path.join(self.b.folder, "song.mp3"))
        with open(os.path.join(self.b.folder, "song.mp3"), "rb") as f:
            self.assertEqual(f.read(), b"la" * 5000)
        rc, out, err = ctl(b, "transfers", "--json")
        self.assertEqual(rc, 0, err)
        self.assertIn("song.mp3", [t["name"] for t in json.loads(out)["transfers"]])
        rc, _, err = ctl(b, "download", "missing.bin")
        self.assertEqual(rc, EXIT_NOT_FOUND, err)
        self.assertIn("no online peer shares missing.bin", err)
        rc, _, err = ctl(b, "download", "notes.txt", "--from", "nobody")
        self.assertEqual(rc, EXIT_NOT_FOUND, err)

        rc, out, err = ctl(a, "logout")
        self.assertEqual((rc, out), (0, "Logged out.\n"), err)
        rc, out, _ = ctl(b, "search", "--exact", "song.mp3", "--json")
        # alice's files left at once; bob's downloaded copy is shared
        self.assertEqual([r["peer"] for r in json.loads(out)["results"]], ["bob"])
        rc, _, err = ctl(a, "index")
        self.assertEqual(rc, EXIT_NOT_LOGGED_IN, err)

    def test_2_unreachable_after_stop(self):
        p = RealPeer("gamma", self.d.url, {})
        rc, _, err = ctl(p.sock, "status")
        self.assertEqual(rc, 0, err)
        p.proc.stop()
        rc, _, err = ctl(p.sock, "status")
        self.assertEqual(rc, EXIT_UNREACHABLE)
        self.assertIn("is p2p-peerd@gamma running? systemctl start p2p-peerd@gamma", err)


if __name__ == "__main__":
    p2ptest.run()
