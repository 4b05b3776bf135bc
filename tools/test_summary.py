#!/usr/bin/env python3
"""Prints `N passed, N failed, N skipped` for a `bazel test` run.

Counts gtest cases from each target's test.xml (GTEST_SKIP counts as skipped), and per target
where no test.xml says more: a target Bazel SKIPPED (incompatible with this host) is one
skipped; a target that FAILED/TIMEOUT/NO STATUS/failed to build without cases is one failed.
A SKIPPED target is printed with the reason: its `requires-*` tags (from `bazel query`)
looked up in @kiln_host's skip_reasons.txt (--skip-reasons; third_party/host.bzl writes it).
Several runs may be summed (e.g. the README's `bazel test //...` and a sanitizer run of the unit
tests): give `--bazel-log LOG --testlogs DIR` once per run, in the same order; a run's label
(`--run-name`, same order; default: none for the first, "run N" after) is printed with its
targets' problems.
Exit code: 0 when nothing failed, 1 otherwise.
"""
import argparse
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

STATUS_RE = re.compile(r"^(//\S+)\s+(?:\(cached\)\s+)?(PASSED|FAILED|SKIPPED|TIMEOUT|NO STATUS|FLAKY|INCOMPLETE|FAILED TO BUILD)\b")


def target_xml(testlogs, label):
    pkg, _, name = label[2:].partition(":")
    return os.path.join(testlogs, pkg, name, "test.xml")


def count_xml(path):
    """Returns (passed, failed, skipped) test cases, or None if unreadable/empty."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    p = f = s = 0
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            f += 1
        elif case.find("skipped") is not None or case.get("result") == "skipped" or case.get("status") == "notrun":
            s += 1
        else:
            p += 1
    if p + f + s == 0:
        return None
    return p, f, s


def read_reasons(path):
    """{tag: reason} from a skip_reasons.txt (tag TAB reason per line); {} if unreadable."""
    reasons = {}
    try:
        with open(path) as fh:
            for line in fh:
                tag, _, why = line.rstrip("\n").partition("\t")
                if tag and why:
                    reasons[tag] = why
    except OSError:
        pass
    return reasons


def target_tags(bazel, label):
    """The tags of `label` from `bazel query --output=build`; [] if the query fails."""
    try:
        out = subprocess.run([bazel, "query", "--output=build", label], capture_output=True,
                             text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    m = re.search(r"tags\s*=\s*\[([^\]]*)\]", out)
    return re.findall(r'"([^"]+)"', m.group(1)) if m else []


def skip_reason(label, reasons, bazel):
    if not reasons:
        return "not runnable on this host"
    why = [reasons[t] for t in target_tags(bazel, label) if t in reasons]
    return "; ".join(why) if why else "incompatible with this host"


def read_statuses(path):
    """{label: status} from a bazel test log; {} (and a message) if unreadable."""
    statuses = {}
    try:
        with open(path, errors="replace") as fh:
            for line in fh:
                m = STATUS_RE.match(line.strip())
                if m:
                    statuses[m.group(1)] = m.group(2)
    except OSError as e:
        print(f"test_summary: cannot read {path}: {e}", file=sys.stderr)
    return statuses


def summarize(statuses, testlogs, reasons, bazel, run_name):
    """(passed, failed, skipped) test cases of one run; prints each problem target."""
    tag = f" [{run_name}]" if run_name else ""
    passed = failed = skipped = 0
    for label, status in sorted(statuses.items()):
        counts = None
        if status in ("PASSED", "FAILED", "FLAKY", "TIMEOUT"):
            counts = count_xml(target_xml(testlogs, label))
        if status == "SKIPPED":
            skipped += 1
            print(f"test_summary: SKIPPED {label}{tag}: {skip_reason(label, reasons, bazel)}")
        elif counts is not None and status in ("PASSED", "FLAKY"):
            passed += counts[0]; failed += counts[1]; skipped += counts[2]
        elif counts is not None:
            passed += counts[0]; failed += max(counts[1], 1); skipped += counts[2]
            print(f"test_summary: {status} {label}{tag}")
        elif status in ("PASSED", "FLAKY"):
            passed += 1
        else:
            failed += 1
            print(f"test_summary: {status} {label}{tag}")
    return passed, failed, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bazel-log", required=True, action="append")
    ap.add_argument("--testlogs", action="append")
    ap.add_argument("--run-name", action="append")
    ap.add_argument("--skip-reasons", default="", help="@kiln_host's skip_reasons.txt")
    ap.add_argument("--bazel", default="bazel", help="bazel binary for the tag query")
    a = ap.parse_args()
    testlogs = a.testlogs or []
    names = a.run_name or []
    reasons = read_reasons(a.skip_reasons) if a.skip_reasons else {}
    passed = failed = skipped = 0
    for i, log in enumerate(a.bazel_log):
        logs_dir = testlogs[i] if i < len(testlogs) else "bazel-testlogs"
        name = names[i] if i < len(names) else ("" if i == 0 else f"run {i + 1}")
        statuses = read_statuses(log)
        if not statuses:
            print(f"test_summary: no test results found in {log}" + (f" [{name}]" if name else ""),
                  file=sys.stderr)
            failed += 1
            continue
        p, f, s = summarize(statuses, logs_dir, reasons, a.bazel, name)
        passed += p; failed += f; skipped += s
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
