# SPDX-License-Identifier: MIT
"""Checks answers of p2p-dird against its OpenAPI document, docs/openapi.json.

dirdtest.Dird hooks check_response() into its requests session, so every
answer a dird test receives is checked: the status must be documented for
that path and method, the documented headers must be there, and a JSON body
must validate against the documented schema (JSON Schema 2020-12, with
python3-jsonschema). A path not in the document must answer the document's
NotFound, a method not listed for a path its MethodNotAllowed with an Allow
header naming exactly the listed methods. A mismatch raises AssertionError,
which fails the test that made the request."""
import copy
import json
import os
import urllib.parse

import jsonschema

import p2ptest

PATH = os.path.join(p2ptest.SRCDIR, "docs", "openapi.json")
METHODS = ("get", "head", "post", "put", "delete", "patch", "options", "trace")

_doc = None
_validators = {}


def document():
    global _doc
    if _doc is None:
        with open(PATH, "rb") as f:
            _doc = json.loads(f.read().decode("utf-8"))
    return _doc


def resolve(node, doc=None, seen=()):
    """node with every local "$ref" replaced by a copy of its target (the
    document has no recursive schemas; a cycle is an error)."""
    doc = doc or document()
    if isinstance(node, list):
        return [resolve(v, doc, seen) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), "only local references: %s" % ref
        assert ref not in seen, "recursive reference %s" % ref
        target = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(target, dict) and part in target, "dangling reference %s" % ref
            target = target[part]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        out = resolve(copy.deepcopy(target), doc, seen + (ref,))
        if rest and isinstance(out, dict):
            out = dict(out, **resolve(rest, doc, seen))
        return out
    return {k: resolve(v, doc, seen) for k, v in node.items()}


def validator(schema):
    key = json.dumps(schema, sort_keys=True)
    v = _validators.get(key)
    if v is None:
        v = _validators[key] = jsonschema.Draft202012Validator(schema)
    return v


def documented_methods(path):
    item = document()["paths"].get(path)
    return None if item is None else [m for m in METHODS if m in item]


def expected_response(method, path, status):
    """The documented response object (resolved) for this answer; raises
    AssertionError when the status is not documented."""
    doc = document()
    comps = doc["components"]["responses"]
    methods = documented_methods(path)
    if methods is None:
        assert status == 404, "%s %s: undocumented path answered %d, not 404" % (method, path, status)
        return resolve(comps["NotFound"])
    if method.lower() not in methods:
        assert status == 405, "%s %s: undocumented method answered %d, not 405" % (method, path, status)
        return resolve(comps["MethodNotAllowed"])
    responses = doc["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, "%s %s answered %d; the document lists %s" % (
        method, path, status, ", ".join(sorted(responses)))
    return resolve(responses[str(status)])


def check(method, path, status, headers, body):
    """Check one answer; headers is a case-insensitive mapping, body bytes."""
    what = "%s %s -> %d" % (method, path, status)
    resp = expected_response(method, path, status)
    for name, h in resp.get("headers", {}).items():
        value = headers.get(name)
        if h.get("required"):
            assert value is not None, "%s: header %s missing" % (what, name)
        if value is not None:
            schema = h.get("schema", {})
            inst = value
            if schema.get("type") == "integer":
                assert value.isdigit(), "%s: header %s=%r is not an integer" % (what, name, value)
                inst = int(value)
            errs = list(validator(schema).iter_errors(inst))
            assert not errs, "%s: header %s=%r: %s" % (what, name, value, errs[0].message)
    if status == 405:
        allowed = [m.upper() for m in documented_methods(path)]
        got = [m.strip() for m in headers.get("Allow", "").split(",")]
        assert sorted(got) == sorted(allowed), "%s: Allow %r, the document lists %r" % (what, got, allowed)
    if method.upper() == "HEAD":
        assert body == b"", "%s: HEAD answered with a body" % what
        return
    content = resp.get("content")
    if not content:
        assert body == b"", "%s: a body where the document has none" % what
        return
    ctype = headers.get("Content-Type", "").split(";")[0].strip()
    assert ctype in content, "%s: Content-Type %r, the document lists %s" % (what, ctype, list(content))
    if ctype == "application/json":
        try:
            inst = json.loads(body.decode("utf-8"))
        except ValueError as e:
            raise AssertionError("%s: the body is not JSON (%s): %r" % (what, e, body[:200]))
    else:
        inst = body.decode("utf-8")
    schema = content[ctype].get("schema", {})
    err = jsonschema.exceptions.best_match(validator(schema).iter_errors(inst))
    if err is not None:
        raise AssertionError("%s: the body does not match the document at %s: %s\nbody: %.500r" % (
            what, "/".join(str(p) for p in err.absolute_path) or "(top)", err.message, inst))


def check_response(r, *args, **kwargs):
    """A requests response hook (also callable directly)."""
    path = urllib.parse.urlsplit(r.request.url).path
    check(r.request.method, path, r.status_code, r.headers, r.content)
    return r
