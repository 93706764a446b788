#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""test_metrics.py with the directory on PostgreSQL (see pgtest.py): the
replica metrics pass promtool too."""
import pgtest

pgtest.run_module("test_metrics")
