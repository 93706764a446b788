#!/usr/bin/python3
"""test_daemon.py with the directory on PostgreSQL (see pgtest.py)."""
import pgtest

pgtest.run_module("test_daemon")
