#!/bin/sh
# Runs a Python unittest file with the system python3 (Bazel 4.2's py_test stub needs a
# `python` binary that Debian 12 does not ship). usage: run_py_test.sh path/in/runfiles.py
set -eu
r="${TEST_SRCDIR:?}/${TEST_WORKSPACE:?}"
exec python3 -B "$r/$1"
