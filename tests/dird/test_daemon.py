#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-dird black-box: configuration, signals, systemd integration,
persistence across restarts and kill -9, liveness TTL, operator CLI."""
import json
import os
import signal
import socket
import subprocess
import time
import unittest

import p2ptest
import dirdtest
from dirdtest import SHA, Dird, new_database, on_postgresql

def dird_cmd(*args, stdin=None):
    return subprocess.run([p2ptest.binary("p2p-dird")] + list(args), input=stdin,
                          capture_output=True, text=True, timeout=30)

class Config(unittest.TestCase):
    def write(self, text):
        path = os.path.join(p2ptest.tempdir(), "dird.json")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_check_good_config(self):
        path = self.write(json.dumps({"listen": "127.0.0.1:7000", "ttl": 30, "registration": False}))
        r = dird_cmd("-c", path, "-n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)

    def test_check_bad_configs_name_file_and_key(self):
        for text, key in (('{"ttl": "soon"}', '"ttl"'), ('{"ttl": 1}', '"ttl"'),
                          ('{"registration": "yes"}', '"registration"'),
                          ('{"listen": "nowhere"}', "listen"), ('{"log_level": "loud"}', "log_level"),
                          ('{"ttl": 30,}', "invalid JSON")):
            path = self.write(text)
            r = dird_cmd("-c", path, "-n")
            self.assertEqual(r.returncode, 2, text)
            self.assertIn(key, r.stderr, text)
            if key != "listen" and key != "log_level":
                self.assertIn(path, r.stderr, text)

    def test_unknown_key_warns(self):
        path = self.write('{"ttl": 30, "colour": "blue"}')
        r = dird_cmd("-c", path, "-n")
        self.assertEqual(r.returncode, 0)
        self.assertIn('unknown key "colour"', r.stderr)

    def test_missing_explicit_config_fails(self):
        r = dird_cmd("-c", "/nonexistent/dird.json", "-n")
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent/dird.json", r.stderr)

    def test_command_line_wins(self):
        d = Dird("--registration", "yes", config={"registration": False})
        self.assertEqual(d.register("optwins").status_code, 201)
        d.stop()
        path = self.write('{"ttl": 30}')
        r = dird_cmd("-c", path, "--ttl", "3", "-n")
        self.assertEqual(r.returncode, 2)
        self.assertIn("out of range", r.stderr)

    def test_bad_options(self):
        self.assertEqual(dird_cmd("--no-such-option").returncode, 2)
        self.assertEqual(dird_cmd("--ttl", "abc", "-n").returncode, 2)
        self.assertEqual(dird_cmd("--listen", "1.2.3.4", "-n").returncode, 2)
        r = dird_cmd("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--listen", r.stdout)
        self.assertIn("--session-lifetime", r.stdout)
        r = dird_cmd("--version")
        self.assertRegex(r.stdout, r"^p2p-dird \d+\.\d+")

class Lifecycle(unittest.TestCase):
    def test_restart_keeps_everything(self):
        d = Dird()
        d.user("keeper", files=("kept.txt",))
        self.assertEqual(d.stop(), 0)  # SIGTERM: clean exit
        d2 = Dird(db=d.db)
        tok = d2.login("keeper")
        r = d2.req("POST", "/index", tok, json={"port": 1, "files": ["kept.txt"]})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(d2.req("GET", "/search", tok, params={"file": "kept.txt"}).status_code, 200)
        d2.stop()

    def test_kill9_right_after_2xx_loses_nothing(self):
        d = Dird()
        db = d.db
        for i in range(5):
            r = d.register("durable%d" % i)
            self.assertEqual(r.status_code, 201)
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
            d = Dird(db=db)
        r = d.req("POST", "/login", json={"username": "durable4", "password": "pw-xxxxxxxx"})
        self.assertEqual(r.status_code, 200)
        out = dird_cmd("--database", db, "user", "list").stdout
        for i in range(5):
            self.assertIn("durable%d" % i, out)
        d.stop()
        if not on_postgresql():
            r = subprocess.run(["sqlite3", db, "PRAGMA integrity_check"], capture_output=True, text=True)
            self.assertEqual(r.stdout.strip(), "ok")

    def test_sighup_reload_and_bad_reload(self):
        d = Dird(config={"registration": True})
        self.assertEqual(d.register("before").status_code, 201)
        with open(d.config_path, "w") as f:
            json.dump({"registration": False}, f)
        d.proc.send_signal(signal.SIGHUP)
        p2ptest.wait_for(lambda: "configuration reloaded" in d.proc.output(), what="reload")
        self.assertEqual(d.register("after").status_code, 403)
        with open(d.config_path, "w") as f:
            f.write('{"registration": tru')
        d.proc.send_signal(signal.SIGHUP)
        p2ptest.wait_for(lambda: "keeping the running configuration" in d.proc.output(), what="failed reload")
        self.assertEqual(d.register("after2").status_code, 403)  # old config kept
        self.assertEqual(d.req("GET", "/healthz").status_code, 200)
        d.stop()

    def test_sigterm_exit_code_and_log(self):
        d = Dird()
        self.assertEqual(d.stop(), 0)
        self.assertIn("stopped", d.proc.output())
        self.assertRegex(d.proc.output(), r"(?m)^<6>")

    def test_ttl_and_ticket_expiry(self):
        d = Dird("--ttl", "5", "--ticket-lifetime", "5")
        srv = d.user("ttlpeer", files=("ttl.txt",))
        cli = d.user("ttlclient", files=())
        ticket = d.req("POST", "/tickets", cli, json={"peer": "ttlpeer", "file": "ttl.txt"}).json()["ticket"]
        self.assertEqual(d.req("GET", "/search", cli, params={"file": "ttl.txt"}).status_code, 200)
        time.sleep(3)
        self.assertEqual(d.req("POST", "/heartbeat", cli).status_code, 200)
        time.sleep(3)
        # ttlpeer was silent for 6 s > TTL: gone; the ticket has expired too.
        self.assertEqual(d.req("GET", "/search", cli, params={"file": "ttl.txt"}).status_code, 404)
        self.assertEqual(d.req("POST", "/tickets/verify", srv, json={"ticket": ticket}).status_code, 403)
        self.assertEqual(d.req("POST", "/heartbeat", srv).status_code, 200)
        self.assertEqual(d.req("GET", "/search", cli, params={"file": "ttl.txt"}).status_code, 200)
        d.stop()

class Systemd(unittest.TestCase):
    def test_socket_activation(self):
        port = p2ptest.free_port()
        db = new_database()
        p = p2ptest.Process(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port,
                             p2ptest.binary("p2p-dird"), "--database", db, "--listen", "127.0.0.1:1"])
        p2ptest.wait_for(lambda: p2ptest.port_open(port), what="socket")
        r = dirdtest.get("http://127.0.0.1:%d/healthz" % port, timeout=10)
        self.assertEqual(r.status_code, 200)
        self.assertIn("socket passed by systemd", p.output())
        p.stop()

    def test_notify_ready_status_stopping(self):
        sockdir = p2ptest.tempdir()
        path = os.path.join(sockdir, "notify")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(10)
        d = Dird(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        got = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("WATCHDOG=1" in g for g in got):
            got.append(s.recv(4096).decode())
        text = "\n".join(got)
        self.assertIn("READY=1", text)
        self.assertRegex(text, r"STATUS=\d+ users, \d+ sessions, \d+ peers online, \d+ files indexed")
        self.assertIn("WATCHDOG=1", text)
        d.proc.send_signal(signal.SIGTERM)
        while True:
            m = s.recv(4096).decode()
            if "STOPPING=1" in m:
                break
        d.stop()
        s.close()

class OperatorCli(unittest.TestCase):
    def test_user_add_list_del_and_peers(self):
        db = new_database()
        r = dird_cmd("--database", db, "user", "add", "opuser", stdin="s3cret\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("s3cret", r.stderr + r.stdout)
        self.assertEqual(dird_cmd("--database", db, "user", "add", "opuser", stdin="x\n").returncode, 1)
        self.assertEqual(dird_cmd("--database", db, "user", "add", "bad name", stdin="x\n").returncode, 2)
        self.assertEqual(dird_cmd("--database", db, "user", "add", "nopw", stdin="").returncode, 1)
        self.assertIn("opuser", dird_cmd("--database", db, "user", "list").stdout)
        d = Dird(db=db)
        tok = d.login("opuser", "s3cret")
        d.req("POST", "/index", tok, json={"port": 1, "files": ["a", "b"]})
        out = dird_cmd("--database", db, "peers").stdout
        self.assertRegex(out, r"opuser\s+2 files")
        self.assertEqual(dird_cmd("--database", db, "user", "del", "opuser").returncode, 0)
        self.assertEqual(dird_cmd("--database", db, "user", "del", "opuser").returncode, 1)
        self.assertEqual(d.req("POST", "/verifyLogin", tok).status_code, 401)
        self.assertEqual(dird_cmd("--database", db, "user", "frobnicate").returncode, 2)
        d.stop()

if __name__ == "__main__":
    p2ptest.run()
