#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""test_badinput.py with the directory on PostgreSQL (see pgtest.py)."""
import pgtest

pgtest.run_module("test_badinput")
