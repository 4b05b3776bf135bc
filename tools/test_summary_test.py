"""Tests for tools/test_summary.py: counting per test case over one or several bazel runs."""
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SUMMARY = os.path.join(HERE, "test_summary.py")

XML_OK = """<?xml version="1.0"?><testsuites><testsuite>
<testcase name="a"/><testcase name="b"/><testcase name="c"><skipped/></testcase>
</testsuite></testsuites>"""
XML_FAIL = """<?xml version="1.0"?><testsuites><testsuite>
<testcase name="a"/><testcase name="b"><failure message="x"/></testcase>
</testsuite></testsuites>"""


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


class TestSummary(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def run_summary(self, *args):
        p = subprocess.run([sys.executable, SUMMARY, "--bazel", "/bin/false", *args],
                           capture_output=True, text=True)
        return p.returncode, p.stdout.strip().splitlines()[-1], p.stdout

    def test_one_run_counts_cases(self):
        write(f"{self.dir}/logs/pkg/t/test.xml", XML_OK)
        write(f"{self.dir}/b.log", "//pkg:t   PASSED in 0.1s\n//pkg:ch  SKIPPED\n")
        rc, last, _ = self.run_summary("--bazel-log", f"{self.dir}/b.log", "--testlogs", f"{self.dir}/logs")
        self.assertEqual(rc, 0)
        self.assertEqual(last, "2 passed, 0 failed, 2 skipped")

    def test_two_runs_are_summed_and_a_failure_in_the_second_fails(self):
        write(f"{self.dir}/logs/pkg/t/test.xml", XML_OK)
        write(f"{self.dir}/asan/pkg/t/test.xml", XML_FAIL)
        write(f"{self.dir}/b.log", "//pkg:t   PASSED in 0.1s\n")
        write(f"{self.dir}/a.log", "//pkg:t   FAILED in 0.1s\n")
        rc, last, out = self.run_summary(
            "--bazel-log", f"{self.dir}/b.log", "--testlogs", f"{self.dir}/logs",
            "--bazel-log", f"{self.dir}/a.log", "--testlogs", f"{self.dir}/asan", "--run-name", "",
            "--run-name", "asan")
        self.assertEqual(rc, 1)
        self.assertEqual(last, "3 passed, 1 failed, 1 skipped")
        self.assertIn("FAILED //pkg:t [asan]", out)

    def test_a_run_without_results_is_a_failure(self):
        write(f"{self.dir}/b.log", "//pkg:t   PASSED in 0.1s\n")
        write(f"{self.dir}/empty.log", "ERROR: build failed\n")
        rc, last, _ = self.run_summary("--bazel-log", f"{self.dir}/b.log", "--bazel-log", f"{self.dir}/empty.log")
        self.assertEqual(rc, 1)
        self.assertEqual(last, "1 passed, 1 failed, 0 skipped")


if __name__ == "__main__":
    unittest.main()
