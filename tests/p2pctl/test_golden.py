#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2pctl's output pinned byte for byte: for each command (and --help), the
text and --json forms, -q, success and each kind of failure, the exit status,
stdout, stderr and the calls that reached the (fake) peerd must equal what
tests/p2pctl/golden.json recorded. Any change to what p2pctl prints shows
here as a diff; when the change is meant, regenerate the file with
P2PCTL_GOLDEN_WRITE=1 and review its diff."""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import p2ptest  # noqa: E402
from fakepeerd import CLOSE, HANG, FakePeerd, error, progress, reply  # noqa: E402
from test_p2pctl import run, run_pty  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")
SHA = "ab" * 32
STATUS = dict(version="9.8.7", peer="peer1", username="alice", logged_in=True,
              directory={"url": "http://127.0.0.1:6970", "reachable": True},
              listen="0.0.0.0:50001", folder="/srv/p2p/peer1", shared_files=3,
              shared_bytes=3 * 1024 * 1024, transfers_active=1)
FULL = dict(STATUS, advertised={"ip": "192.0.2.7", "port": 50001}, bytes_up=3 * 1024 * 1024, bytes_down=512,
            bytes_up_total=5 * 1024 ** 3, bytes_down_total=1536, upload_rate=1048576, download_rate=0)
FILES = [{"name": "a-long-name.iso", "size": 5 * 1024 ** 3, "sha256": SHA, "mtime": 1700000000},
         {"name": "b.txt", "size": 12, "sha256": "cd" * 32, "mtime": 1700000000},
         {"name": "évil\x1b[31m", "size": 1536, "sha256": SHA, "mtime": 0}]
RESULTS = [{"peer": "p2", "ip": "127.0.0.1", "port": 50002, "name": "song.mp3", "size": 4096, "sha256": SHA},
           {"peer": "p3", "ip": "::1", "port": 50003, "name": "Song (live).mp3", "size": 7 * 1024 ** 2,
            "sha256": "cd" * 32}]
TRANSFERS = [{"id": "4a", "name": "big.iso", "state": "running", "size": 2048, "received": 1024, "rate": 512,
              "sources": 3},
             {"id": "5b", "name": "small.txt", "state": "done", "size": 0, "received": 0, "rate": 0, "sources": 0}]
RUNNING = progress(id="7", name="f.bin", state="running", size=1000, received=250, rate=125, sources=2)
DONE = reply(id="7", name="f.bin", state="done", path="/srv/f.bin", size=1000, sha256=SHA, seconds=2,
             sources_used=2)
ERRORS = [
    ("io.p2p.Peer.NotLoggedIn", {}),
    ("io.p2p.Peer.AuthenticationFailed", {"message": "bad password"}),
    ("io.p2p.Peer.UserExists", {"username": "alice"}),
    ("io.p2p.Peer.RegistrationClosed", {}),
    ("io.p2p.Peer.RateLimited", {"retry_after": 12}),
    ("io.p2p.Peer.DirectoryUnreachable", {"url": "http://d:6970", "message": "connection refused"}),
    ("io.p2p.Peer.PermissionDenied", {}),
    ("io.p2p.Peer.Busy", {"message": "too many control connections"}),
    ("io.p2p.Peer.NotFound", {"id": "9"}),
    ("org.varlink.service.MethodNotFound", {"method": "io.p2p.Peer.Index"}),
    ("org.varlink.service.InvalidParameter", {"parameter": "name"}),
    ("com.example.Weird", {"x": 1}),
]


def cases():
    """(id, argv after -s SOCKET, {method: answers}, stdin, pty)."""
    out = []

    seen = {}

    def add(args, script=None, stdin=b"", pty=False, name=None):
        name = name or " ".join(args) + (" <" + repr(stdin) if stdin else "")
        if script:
            name += " [%s]" % ",".join(a["error"] for v in script.values() for a in v
                                       if isinstance(a, dict) and "error" in a)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name += " (%d)" % seen[name]
        out.append((name, args, script or {}, stdin, pty))

    add(["--help"])
    add([])
    add(["frobnicate"])
    for cmd in ("register", "login", "logout", "status", "index", "ls", "search", "download", "transfers",
                "cancel", "pause", "resume", "set"):
        add([cmd, "--help"])
        add([cmd, "--bogus"])
        add(["--json", cmd, "--bogus"])
    pw = b"s3cret pw\n"
    # register, login
    for cmd, m, ans in (("register", "Register", reply(username="alice")),
                        ("login", "Login", reply(username="Alice", expires_at=2000000000))):
        for flags in ([], ["--json"], ["-q"]):
            add([cmd, "alice", "--password-stdin"] + flags, {m: [ans]}, pw)
        add([cmd, "alice", "--password-stdin"], {m: [error("io.p2p.Peer.UserExists", username="alice")]}, pw)
        add([cmd, "alice", "--password-stdin", "--json"],
            {m: [error("io.p2p.Peer.AuthenticationFailed", message="wrong user name or password")]}, pw)
        add([cmd, "bad name", "--password-stdin"], stdin=pw)
        add([cmd, "alice", "--password-stdin", "--password-file", "/f"], stdin=pw)
        add([cmd, "alice", "--password-file", "/nonexistent"])
        add([cmd, "alice", "extra", "--password-stdin"], stdin=pw)
        add([cmd, "alice", "--password-stdin"], {m: [ans]}, b"")
        add([cmd, "alice"], {m: [ans]}, pw)
    # commands without arguments
    for cmd, m, answers in (
            ("logout", "Logout", [reply()]),
            ("index", "Index", [reply(indexed=0), reply(indexed=1), reply(indexed=7), reply()]),
            ("status", "Status", [reply(**STATUS), reply(**FULL),
                                  reply(**dict(STATUS, username=None, logged_in=False,
                                               directory={"url": "http://d", "reachable": False})),
                                  reply(**dict(STATUS, directory={"url": "http://d", "reachable": False,
                                                                  "state": "not answering"},
                                               advertised={"ip": "2001:db8::1", "port": 7},
                                               shared_files=1, upload_rate=2560, download_rate=5 << 30)),
                                  reply(**dict(STATUS, advertised={"port": 9}, peer="bad\x1bname")),
                                  reply()]),
            ("ls", "ListShared", [reply(files=FILES), reply(files=FILES[1:2]), reply(files=[]), reply()]),
            ("transfers", "Transfers", [reply(transfers=TRANSFERS), reply(transfers=[]), reply()])):
        for i, a in enumerate(answers):
            for flags in ([], ["--json"], ["-q"]):
                add([cmd] + flags, {m: [a]}, name="%s %s #%d" % (cmd, " ".join(flags), i))
        add([cmd, "extra"])
        add([cmd], {m: [error("io.p2p.Peer.NotLoggedIn")]})
        add([cmd, "--json"], {m: [error("io.p2p.Peer.NotLoggedIn")]})
    for name, params in ERRORS:
        add(["index"], {"Index": [error(name, **params)]}, name="index: " + name)
        add(["index", "--json"], {"Index": [error(name, **params)]}, name="index --json: " + name)
    for raw in (b"garbage", b"[1]", b'{"error":7}', b'{"parameters":{},"continues":"no"}',
                b'{"parameters":"x"}', b'{"parameters":{"s":"\xff"}}'):
        add(["index"], {"Index": [raw]}, name="index malformed " + repr(raw))
        add(["index", "--json"], {"Index": [raw]}, name="index --json malformed " + repr(raw))
    add(["status"], {"Status": [CLOSE]}, name="status closed")
    add(["-t", "1", "status"], {"Status": [HANG]}, name="status silent")
    add(["-t", "1", "--json", "status"], {"Status": [HANG]}, name="status --json silent")
    add(["transfers"], name="transfers unknown method")
    # search
    srch = {"Search": [reply(results=RESULTS, total=2)]}
    for flags in ([], ["--json"], ["-q"]):
        add(["search", "SONG"] + flags, srch)
        add(["search", "--exact", "song.mp3", "--limit", "1", "--offset", "3"] + flags,
            {"Search": [reply(results=RESULTS[:1], total=9)]})
        add(["search", "nothing"] + flags, {"Search": [reply(results=[], total=0)]})
    add(["search", "SONG", "--limit", "2"], {"Search": [reply(results=RESULTS, total=9)]})
    add(["search", "x"], {"Search": [reply()]})
    for args in (["search"], ["search", "a", "--limit", "0"], ["search", "a", "--limit", "1001"],
                 ["search", "a", "--limit", "ten"], ["search", "a", "--offset", "-1"],
                 ["search", "--exact", "a/b"], ["search", "--exact", "x", "more"], ["search", ""],
                 ["search", "a", "b"], ["search", "x" * 256], ["search", "--json", "a", "--limit", "0"]):
        add(args)
    add(["search", "a"], {"Search": [error("io.p2p.Peer.DirectoryUnreachable", url="http://d",
                                           message="timed out")]})
    # download
    dl = {"Download": [RUNNING, DONE]}
    for flags in ([], ["--json"], ["-q"], ["--from", "p2", "--force"]):
        add(["download", "f.bin"] + flags, dl)
    add(["download", "f.bin", "--to", "@DIR@"], dl)
    add(["download", "f.bin"], {"Download": [DONE]}, name="download without progress")
    add(["download", "f.bin"], {"Download": [progress(id="7", name="f.bin", state="running", size=0,
                                                      received=0, rate=0, sources=1), DONE]},
        name="download size 0")
    for err_reply in (error("io.p2p.Peer.NotFound", name="f.bin"),
                      error("io.p2p.Peer.VerificationFailed", name="f.bin", message="sha256 mismatch"),
                      error("io.p2p.Peer.TransferFailed", name="f.bin", message="all sources gone", received=77),
                      error("io.p2p.Peer.TransferFailed", name="f.bin", message="busy", received=0, retry=False),
                      error("io.p2p.Peer.FileExists", name="f.bin", message="/srv/f.bin exists; it is kept"),
                      error("io.p2p.Peer.NotLoggedIn"),
                      error("io.p2p.Peer.Cancelled", id="7")):
        for flags in ([], ["--json"]):
            add(["download", "f.bin"] + flags, {"Download": [RUNNING, err_reply]},
                name="download %s %s" % (" ".join(flags), err_reply["error"]))
    add(["download", "f.bin"], {"Download": [RUNNING, CLOSE]}, name="download closed")
    for args in (["download"], ["download", "../etc/passwd"], ["download", ".."], ["download", "a", "b"],
                 ["download", "a", "--from", "no such"], ["download", "a", "--to", "/nonexistent/dir"],
                 ["download", "a", "--to", "/etc/passwd"], ["download", "--json", "a", "--to", "/nonexistent"]):
        add(args)
    # cancel, pause, resume
    for cmd, m in (("cancel", "Cancel"), ("pause", "Pause"), ("resume", "Resume")):
        for flags in ([], ["--json"], ["-q"]):
            add([cmd, "4a"] + flags, {m: [reply(id="4a")]})
        add([cmd, "9"], {m: [error("io.p2p.Peer.NotFound", id="9")]})
        add([cmd, "9", "--json"], {m: [error("io.p2p.Peer.NotFound", id="9")]})
        for args in ([], ["1;2"], [""], ["x" * 65], ["a", "b"]):
            add([cmd] + args)
    # set
    for args, ans in ((["upload-rate", "1M"], reply(upload_rate=1048576, download_rate=0)),
                      (["upload-rate", "unlimited", "download-rate", "2560"], reply(upload_rate=0, download_rate=2560)),
                      (["download-rate", "3g"], reply(upload_rate=0, download_rate=3 << 30)),
                      (["download-rate", "7KiB"], reply(upload_rate=5, download_rate=7168))):
        for flags in ([], ["--json"], ["-q"]):
            add(["set"] + args + flags, {"SetRates": [ans]})
    for args in (["upload-rate"], ["upload-rate", "1", "download-rate"], ["speed", "1"], ["upload-rate", "-1"],
                 ["upload-rate", "x1"], ["upload-rate", "1.5M"], ["upload-rate", "2T"], ["download-rate", "1025G"],
                 ["upload-rate", "1", "upload-rate", "2"], ["upload-rate", "1", "download-rate", "2", "x"], []):
        add(["set"] + args)
    add(["set", "upload-rate", "5"], {"SetRates": [error("org.varlink.service.InvalidParameter",
                                                         parameter="upload_rate")]})
    # on a terminal: colours, the progress bar
    add(["status"], {"Status": [reply(**FULL)]}, pty=True, name="pty status")
    add(["status"], {"Status": [reply(**dict(STATUS, username=None, logged_in=False,
                                             directory={"url": "http://d", "reachable": False}))]},
        pty=True, name="pty status logged out")
    add(["ls"], {"ListShared": [reply(files=FILES)]}, pty=True, name="pty ls")
    add(["transfers"], {"Transfers": [reply(transfers=TRANSFERS)]}, pty=True, name="pty transfers")
    add(["download", "a-very-long-file-name-that-is-cut.iso"],
        {"Download": [progress(id="1", name="a-very-long-file-name-that-is-cut.iso", state="running",
                               size=4 * 1024 ** 2, received=1024 ** 2, rate=1024 ** 2, sources=2),
                      reply(id="1", name="a-very-long-file-name-that-is-cut.iso", state="done",
                            path="/d/a-very-long-file-name-that-is-cut.iso", size=4 * 1024 ** 2, sha256=SHA,
                            seconds=4)]}, pty=True, name="pty download")
    return out


class Golden(unittest.TestCase):
    def test_outputs(self):
        # "p2pctl VERSION" is in some messages: the file holds it as @VERSION@.
        version = run(["--version"])[1].strip()
        self.assertRegex(version, r"^p2pctl \d+\.\d+")
        d = p2ptest.tempdir("p2pctl-golden-")
        sock = os.path.join(d, "peer1.sock")
        got = {}
        for name, args, script, stdin, pty in cases():
            fake = FakePeerd(sock)
            try:
                for m, answers in script.items():
                    fake.on(m, *answers)
                argv = ["-s", sock] + [d if a == "@DIR@" else a for a in args]
                if pty:
                    rc, shown = run_pty(argv)
                    res = {"rc": rc, "terminal": shown}
                else:
                    rc, o, e = run(argv, stdin=stdin)
                    res = {"rc": rc, "stdout": o, "stderr": e}
                res["calls"] = fake.calls
            finally:
                fake.close()
            got[name] = json.loads(json.dumps(res).replace(d, "@DIR@").replace(version, "p2pctl @VERSION@"))
        if os.environ.get("P2PCTL_GOLDEN_WRITE"):
            with open(GOLDEN, "w") as f:
                json.dump(got, f, indent=1, ensure_ascii=False, sort_keys=True)
                f.write("\n")
        with open(GOLDEN) as f:
            want = json.load(f)
        self.assertEqual(sorted(got), sorted(want))
        wrong = ["%s:\n  want %r\n  got  %r" % (k, want[k], got[k]) for k in sorted(want) if got[k] != want[k]]
        self.assertEqual(wrong, [], "\n".join(wrong))
        self.assertGreater(len(want), 250)


if __name__ == "__main__":
    p2ptest.run()
