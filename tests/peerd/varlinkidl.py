# SPDX-License-Identifier: MIT
"""A small reader of varlink interface definitions (https://varlink.org/Interface-Definition)
for the tests: parse() turns the text into an Interface, check() says what in a
JSON value does not match a type. Written for the tests only; strict where the
grammar is, so that a typo in docs/io.p2p.Peer.varlink fails the tests."""
import re

_TOKEN = re.compile(r"\s+|#[^\n]*|->|\[\]|\[string\]|[(),:?]|[A-Za-z][A-Za-z0-9_.-]*")
KEYWORDS = ("interface", "type", "method", "error")
SCALARS = ("bool", "int", "float", "string", "object")
_FIELD = re.compile(r"^[A-Za-z](_?[A-Za-z0-9])*$")
_MEMBER = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_IFACE = re.compile(r"^[A-Za-z]([-]*[A-Za-z0-9])*(\.[A-Za-z0-9]([-]*[A-Za-z0-9])*)+$")


class IDLError(ValueError):
    pass


def tokens(text):
    pos, out = 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise IDLError("unexpected %r at offset %d" % (text[pos:pos + 20], pos))
        t = m.group(0)
        if not t.isspace() and not t.startswith("#"):
            out.append(t)
        pos = m.end()
    return out


class Interface:
    def __init__(self, name):
        self.name = name
        self.types = {}    # name -> type
        self.methods = {}  # name -> (input struct, output struct)
        self.errors = {}   # name -> struct


class _Parser:
    def __init__(self, text):
        self.t = tokens(text)
        self.i = 0

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want=None):
        t = self.peek()
        if t is None or (want is not None and t != want):
            raise IDLError("expected %r, got %r (token %d)" % (want, t, self.i))
        self.i += 1
        return t

    def type(self):
        t = self.take()
        if t == "?":
            inner = self.type()
            if inner[0] == "maybe":
                raise IDLError("?? is not a type")
            return ("maybe", inner)
        if t == "[]":
            return ("array", self.type())
        if t == "[string]":
            return ("map", self.type())
        if t == "(":
            self.i -= 1
            return self.struct_or_enum()
        if t in SCALARS:
            return (t,)
        if _MEMBER.match(t):
            return ("ref", t)
        raise IDLError("not a type: %r" % t)

    def struct_or_enum(self):
        """( ) / (a: T, ...) / (a, b, ...)"""
        self.take("(")
        if self.peek() == ")":
            self.take()
            return ("struct", {})
        names, types = [], []
        while True:
            n = self.take()
            if not _FIELD.match(n):
                raise IDLError("bad field name %r" % n)
            if n in names:
                raise IDLError("field %r twice" % n)
            names.append(n)
            if self.peek() == ":":
                self.take()
                types.append(self.type())
            else:
                types.append(None)
            if self.take() == ")":
                break
            if self.t[self.i - 1] != ",":
                raise IDLError("expected , or ) after %r" % n)
        if all(t is None for t in types):
            return ("enum", names)
        if any(t is None for t in types):
            raise IDLError("mixed struct and enum")
        return ("struct", dict(zip(names, types)))

    def parse(self):
        self.take("interface")
        name = self.take()
        if not _IFACE.match(name):
            raise IDLError("bad interface name %r" % name)
        iface = Interface(name)
        seen = set()
        while self.peek() is not None:
            kw = self.take()
            if kw not in ("type", "method", "error"):
                raise IDLError("expected type/method/error, got %r" % kw)
            member = self.take()
            if not _MEMBER.match(member) or member in seen:
                raise IDLError("bad or repeated member name %r" % member)
            seen.add(member)
            if kw == "type":
                iface.types[member] = self.type()
            elif kw == "error":
                s = self.struct_or_enum()
                if s[0] != "struct":
                    raise IDLError("error %s: not a struct" % member)
                iface.errors[member] = s[1]
            else:
                a = self.struct_or_enum()
                self.take("->")
                b = self.struct_or_enum()
                if a[0] != "struct" or b[0] != "struct":
                    raise IDLError("method %s: not structs" % member)
                iface.methods[member] = (a[1], b[1])
        for t in list(iface.types.values()) + [f for m in iface.methods.values() for f in m] + \
                list(iface.errors.values()):
            _check_refs(iface, t if isinstance(t, tuple) else ("struct", t))
        return iface


def _check_refs(iface, t):
    if t[0] == "ref":
        if t[1] not in iface.types:
            raise IDLError("unknown type %s" % t[1])
    elif t[0] in ("maybe", "array", "map"):
        _check_refs(iface, t[1])
    elif t[0] == "struct":
        for f in t[1].values():
            _check_refs(iface, f)


def parse(text):
    return _Parser(text).parse()


def check(iface, value, t, where="", absent_ok=False):
    """What in value does not match type t: a list of strings (empty: fine)."""
    if t[0] == "maybe":
        return [] if value is None else check(iface, value, t[1], where)
    if value is None:
        return ["%s: null or missing, not %s" % (where or "value", t[0])]
    kind = t[0]
    if kind == "ref":
        return check(iface, value, iface.types[t[1]], where)
    if kind == "bool":
        return [] if isinstance(value, bool) else ["%s: not a bool: %r" % (where, value)]
    if kind == "int":
        return [] if isinstance(value, int) and not isinstance(value, bool) else \
            ["%s: not an int: %r" % (where, value)]
    if kind == "float":
        return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else \
            ["%s: not a float: %r" % (where, value)]
    if kind == "string":
        return [] if isinstance(value, str) else ["%s: not a string: %r" % (where, value)]
    if kind == "object":
        return []
    if kind == "enum":
        return [] if value in t[1] else ["%s: %r is not one of %s" % (where, value, t[1])]
    if kind == "array":
        if not isinstance(value, list):
            return ["%s: not an array" % where]
        return [p for i, v in enumerate(value) for p in check(iface, v, t[1], "%s[%d]" % (where, i))]
    if kind == "map":
        if not isinstance(value, dict):
            return ["%s: not a map" % where]
        return [p for k, v in value.items() for p in check(iface, v, t[1], "%s[%r]" % (where, k))]
    if kind == "struct":
        return check_struct(iface, value, t[1], where)
    raise AssertionError(t)


def check_struct(iface, value, fields, where=""):
    """value against a struct's fields: every field has its type (a nullable
    one may be absent), and no field the struct does not declare."""
    if not isinstance(value, dict):
        return ["%s: not an object" % where]
    problems = ["%s.%s: not declared" % (where, k) for k in value if k not in fields]
    for k, ft in fields.items():
        problems += check(iface, value.get(k), ft, "%s.%s" % (where, k))
    return problems
