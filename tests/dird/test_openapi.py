#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-dird's OpenAPI document (docs/openapi.json): served byte for byte at
GET /openapi.json, a well-formed OpenAPI 3.1 document whose schemas are valid
JSON Schema 2020-12, listing exactly the daemon's routes and methods; HEAD on
every GET route; and the checker every dird test goes through
(openapi_check.py) refuses answers the document does not describe."""
import json
import os
import re
import socket
import unittest

import jsonschema
import requests

import openapi_check
import p2ptest
from dirdtest import SHA, Dird

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")

# The part of OpenAPI 3.1's structure that this document uses, as JSON
# Schema: enough to catch a misspelt key, a response without description,
# a status that is not a status, a parameter without "in".
ref = {"type": "object", "required": ["$ref"], "properties": {"$ref": {"type": "string", "pattern": "^#/components/"}}}
header = {"type": "object", "additionalProperties": False,
          "properties": {"description": {"type": "string"}, "required": {"type": "boolean"},
                         "schema": {"type": "object"}}}
media = {"type": "object", "additionalProperties": False, "required": ["schema"],
         "properties": {"schema": {"type": "object"}}}
response = {"type": "object", "additionalProperties": False, "required": ["description"],
            "properties": {"description": {"type": "string", "minLength": 1},
                           "headers": {"type": "object", "additionalProperties": {"oneOf": [ref, header]}},
                           "content": {"type": "object", "minProperties": 1,
                                       "propertyNames": {"pattern": "^[a-z]+/[-+.a-z0-9]+$"},
                                       "additionalProperties": media}}}
parameter = {"type": "object", "additionalProperties": False, "required": ["name", "in", "schema"],
             "properties": {"name": {"type": "string"}, "in": {"enum": ["query", "header", "path", "cookie"]},
                            "required": {"type": "boolean"}, "description": {"type": "string"},
                            "schema": {"type": "object"}}}
operation = {"type": "object", "additionalProperties": False, "required": ["operationId", "responses"],
             "properties": {"operationId": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
                            "summary": {"type": "string"}, "description": {"type": "string"},
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "security": {"type": "array", "items": {"type": "object"}},
                            "parameters": {"type": "array", "items": parameter},
                            "requestBody": {"type": "object", "additionalProperties": False,
                                            "required": ["content"],
                                            "properties": {"required": {"type": "boolean"},
                                                           "description": {"type": "string"},
                                                           "content": {"type": "object",
                                                                       "additionalProperties": media}}},
                            "responses": {"type": "object", "minProperties": 1,
                                          "propertyNames": {"pattern": "^[1-5][0-9][0-9]$"},
                                          "additionalProperties": {"oneOf": [ref, response]}}}}
OPENAPI_31 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object", "additionalProperties": False,
    "required": ["openapi", "info", "paths"],
    "properties": {
        "openapi": {"type": "string", "pattern": r"^3\.1\.[0-9]+$"},
        "jsonSchemaDialect": {"const": "https://json-schema.org/draft/2020-12/schema"},
        "info": {"type": "object", "required": ["title", "version"],
                 "properties": {"title": {"type": "string"}, "version": {"type": "string"},
                                "summary": {"type": "string"}, "description": {"type": "string"},
                                "license": {"type": "object", "required": ["name"]}}},
        "servers": {"type": "array", "items": {"type": "object", "required": ["url"]}},
        "tags": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "security": {"type": "array"},
        "paths": {"type": "object", "propertyNames": {"pattern": "^/"},
                  "additionalProperties": {"type": "object", "minProperties": 1, "additionalProperties": False,
                                           "properties": {m.lower(): operation for m in HTTP_METHODS}}},
        "components": {"type": "object", "additionalProperties": False, "properties": {
            "schemas": {"type": "object", "additionalProperties": {"type": "object"}},
            "responses": {"type": "object", "additionalProperties": response},
            "headers": {"type": "object", "additionalProperties": header},
            "securitySchemes": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["type"],
                "properties": {"type": {"enum": ["apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"]}}}}}},
    },
}


def daemon_routes():
    """The route table of src/dird/api.c: {path: (methods, auth)}."""
    with open(os.path.join(p2ptest.SRCDIR, "src", "dird", "api.c")) as f:
        text = f.read()
    table = re.search(r"routes\[R_COUNT\] = \{(.*?)\n\};", text, re.S).group(1)
    routes = {}
    for m in re.finditer(r'\{ "([^"]+)", EVHTTP_REQ_(\w+), "([^"]+)", (true|false),', table):
        path, method, allow, auth = m.groups()
        methods = [a.strip().lower() for a in allow.split(",")]
        assert method.lower() in methods, m.group(0)
        routes[path] = (methods, auth == "true")
    return routes


class Document(unittest.TestCase):
    def setUp(self):
        self.doc = openapi_check.document()

    def test_is_openapi_31(self):
        jsonschema.Draft202012Validator.check_schema(OPENAPI_31)
        jsonschema.Draft202012Validator(OPENAPI_31).validate(self.doc)
        # Every schema, wherever it is, is valid JSON Schema 2020-12.
        schemas = []

        def walk(node, path):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "schema" or path.endswith("/components/schemas"):
                        schemas.append((path + "/" + k, v))
                    walk(v, path + "/" + k)
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, "%s/%d" % (path, i))
        walk(self.doc, "#")
        self.assertGreater(len(schemas), 50)
        for where, s in schemas:
            with self.subTest(where=where):
                jsonschema.Draft202012Validator.check_schema(s)
        # Every reference resolves, none is recursive; operationIds are unique.
        openapi_check.resolve(self.doc)
        ids = [op["operationId"] for item in self.doc["paths"].values() for op in item.values()]
        self.assertEqual(len(ids), len(set(ids)))
        # Every component is used.
        text = json.dumps(self.doc)
        for kind in ("schemas", "responses", "headers"):
            for name in self.doc["components"][kind]:
                if kind == "responses" and name in ("NotFound", "MethodNotAllowed", "NotFoundHead",
                                                    "MethodNotAllowedHead"):
                    continue  # the answers to paths and methods not listed
                self.assertTrue('"#/components/%s/%s"' % (kind, name) in text, "%s/%s is unused" % (kind, name))

    def test_routes_are_the_daemons(self):
        routes = daemon_routes()
        self.assertGreaterEqual(len(routes), 12)
        paths = self.doc["paths"]
        self.assertEqual(sorted(routes), sorted(paths))
        schemes = set(self.doc["components"]["securitySchemes"])
        for path, (methods, auth) in routes.items():
            with self.subTest(path=path):
                self.assertEqual(sorted(methods), sorted(paths[path]))
                for m, op in paths[path].items():
                    sec = op.get("security", self.doc.get("security", []))
                    self.assertEqual(bool(sec), auth, "%s %s" % (m, path))
                    for req in sec:
                        self.assertLessEqual(set(req), schemes)
                    if auth:
                        self.assertIn("401", op["responses"])
                    if m == "head":
                        get = paths[path]["get"]
                        self.assertEqual(sorted(op["responses"]), sorted(get["responses"]))
                        self.assertEqual(op.get("parameters"), get.get("parameters"))
                        for code, r in openapi_check.resolve(op["responses"]).items():
                            self.assertNotIn("content", r, "HEAD %s %s has a body" % (path, code))
                    # Every operation can fail on a bad URI, a large body, an internal fault.
                    for code in ("400", "413", "500"):
                        self.assertIn(code, op["responses"], "%s %s" % (m, path))


class Served(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Dird()
        cls.tok = cls.d.user("headuser", files=("head.txt",))

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_served_document_is_the_file(self):
        with open(openapi_check.PATH, "rb") as f:
            text = f.read()
        r = self.d.req("GET", "/openapi.json")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers["Content-Type"], "application/json")
        self.assertEqual(r.content, text)
        self.assertEqual(r.json()["openapi"][:4], "3.1.")

    def test_every_method_on_every_path(self):
        # The hook checks each answer against the document; here: a listed
        # method is never refused with 405, an unlisted one always is.
        tok = self.d.user("methoduser", files=())  # POST /logout ends its session
        for path, item in openapi_check.document()["paths"].items():
            for m in HTTP_METHODS:
                with self.subTest(method=m, path=path):
                    r = self.d.req(m, path, tok, **({"json": {}} if m == "POST" else {}))
                    if m.lower() in item:
                        self.assertNotEqual(r.status_code, 405)
                    else:
                        self.assertEqual(r.status_code, 405)
        for m in ("GET", "HEAD", "POST"):
            self.assertEqual(self.d.req(m, "/no/such/path").status_code, 404)

    def same_head(self, path, token=None, params=None, volatile=()):
        g = self.d.req("GET", path, token, params=params)
        h = self.d.req("HEAD", path, token, params=params)
        self.assertEqual(h.status_code, g.status_code, path)
        self.assertEqual(h.content, b"")
        skip = {"date"} | {v.lower() for v in volatile}
        gh = {k.lower(): v for k, v in g.headers.items() if k.lower() not in skip}
        hh = {k.lower(): v for k, v in h.headers.items() if k.lower() not in skip}
        self.assertEqual(hh, gh, path)
        self.assertIn("Content-Length", h.headers)
        if "content-length" not in skip:
            self.assertEqual(int(h.headers["Content-Length"]), len(g.content))
        return g.status_code

    def test_head_is_get_without_the_body(self):
        self.assertEqual(self.same_head("/healthz"), 200)
        self.assertEqual(self.same_head("/openapi.json"), 200)
        self.assertEqual(self.same_head("/metrics", volatile=("Content-Length",)), 200)
        self.assertEqual(self.same_head("/search", self.tok, {"file": "head.txt"}), 200)
        self.assertEqual(self.same_head("/search", self.tok, {"q": "head"}), 200)
        self.assertEqual(self.same_head("/search", self.tok, {"file": "nothing.txt"}), 404)
        self.assertEqual(self.same_head("/search", self.tok, {"q": ""}), 400)
        self.assertEqual(self.same_head("/search", None, {"q": "head"}), 401)
        self.assertEqual(self.same_head("/search", "0" * 64, {"q": "head"}), 401)
        # HEAD on a POST route is refused like any other method.
        r = self.d.req("HEAD", "/login")
        self.assertEqual((r.status_code, r.headers["Allow"], r.content), (405, "POST", b""))

    def test_head_sends_no_body_on_a_kept_alive_connection(self):
        # Were a body sent, the next answer would not start right after the headers.
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=5) as s:
            s.sendall(b"HEAD /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        first, rest = data.split(b"\r\n\r\n", 1)
        self.assertTrue(first.startswith(b"HTTP/1.1 200 "), first)
        self.assertIn(b"Content-Length: %d" % os.path.getsize(openapi_check.PATH), first)
        self.assertTrue(rest.startswith(b"HTTP/1.1 200 "), rest[:100])
        self.assertTrue(rest.endswith(b'{"status":"ok"}'), rest[-100:])

    def test_head_counts_in_metrics(self):
        self.d.req("HEAD", "/openapi.json")
        text = self.d.req("GET", "/metrics").text
        self.assertRegex(text, r'p2p_dird_requests_total\{route="openapi",code="200"\} [1-9]')


class Checker(unittest.TestCase):
    """openapi_check refuses what the document does not describe."""

    def refused(self, method, path, status, headers, body):
        with self.assertRaises(AssertionError):
            openapi_check.check(method, path, status, requests.structures.CaseInsensitiveDict(headers), body)

    def test_accepts_what_is_documented(self):
        json_h = {"Content-Type": "application/json"}
        openapi_check.check("POST", "/register", 201, json_h, b'{"username":"a"}')
        openapi_check.check("POST", "/register", 429, dict(json_h, **{"Retry-After": "3"}), b'{"error":"x"}')
        openapi_check.check("GET", "/nope", 404, json_h, b'{"error":"no such resource"}')
        openapi_check.check("PUT", "/healthz", 405, dict(json_h, Allow="GET, HEAD"), b'{"error":"x"}')
        openapi_check.check("HEAD", "/healthz", 200, json_h, b"")
        hit = {"peer": "p", "ip": "127.0.0.1", "port": 1, "folder": "", "name": "a", "size": None, "sha256": SHA}
        openapi_check.check("GET", "/search", 200, json_h, json.dumps({"peers_with_file": [hit]}).encode())
        # What the other backends and limits answer (PostgreSQL replicas,
        # throttles, max_files), as their code writes it.
        openapi_check.check("GET", "/healthz", 503, json_h, json.dumps(
            {"status": "unavailable", "staleness_seconds": 7.5, "max_staleness_seconds": 5.0,
             "change": 41, "database_change": 42}).encode())
        openapi_check.check("GET", "/search", 503, dict(json_h, **{"Retry-After": "1"}), b'{"error":"lags"}')
        openapi_check.check("POST", "/login", 503, dict(json_h, **{"Retry-After": "1"}), b'{"error":"x"}')
        openapi_check.check("POST", "/index", 413, json_h, b'{"error":"too many files"}')

    def test_refuses_what_is_not(self):
        json_h = {"Content-Type": "application/json"}
        self.refused("POST", "/register", 200, json_h, b'{"username":"a"}')         # status
        self.refused("POST", "/register", 201, json_h, b'{"username":5}')           # type
        self.refused("POST", "/register", 201, json_h, b'{"username":"a","x":1}')   # extra field
        self.refused("POST", "/register", 201, json_h, b'{"user":"a"}')              # missing field
        self.refused("POST", "/register", 201, {"Content-Type": "text/html"}, b'{"username":"a"}')
        self.refused("POST", "/register", 201, json_h, b"<html>")                    # not JSON
        self.refused("POST", "/register", 429, json_h, b'{"error":"x"}')             # no Retry-After
        self.refused("POST", "/logout", 401, json_h, b'{"error":"x"}')               # no WWW-Authenticate
        self.refused("GET", "/nope", 200, json_h, b"{}")                             # unknown path
        self.refused("PUT", "/healthz", 405, dict(json_h, Allow="GET"), b'{"error":"x"}')  # wrong Allow
        self.refused("HEAD", "/healthz", 200, json_h, b'{"status":"ok"}')            # HEAD with a body
        self.refused("GET", "/healthz", 200, json_h, b'{"status":"fine"}')
        self.refused("GET", "/healthz", 200, json_h, b'{"status":"ok","change":"41"}')
        self.refused("GET", "/search", 503, json_h, b'{"error":"x"}')                # no Retry-After
        self.refused("GET", "/metrics", 503, json_h, b'{"error":"x"}')               # never 503
        hit = {"peer": "p", "ip": "127.0.0.1", "port": 1, "folder": "", "name": "a", "size": None, "sha256": "XY"}
        self.refused("GET", "/search", 200, json_h, json.dumps({"peers_with_file": [hit]}).encode())


if __name__ == "__main__":
    p2ptest.run()
