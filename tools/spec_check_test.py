"""Tests for tools/spec_check.py on a small synthetic workspace: what it accepts, and that a
missing package, target or case, a renamed case, a bad number or a malformed reference each
fail with a message naming the line and the reference."""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKER = os.path.join(HERE, "spec_check.py")
sys.path.insert(0, HERE)
import spec_check  # noqa: E402

BUILD = """\
load("@rules_cc//cc:defs.bzl", "cc_library", "cc_test")
load("//x:defs.bzl", "MAYBE_PATH", "SOME_LIST")

_ARGS = ["--flag=" + (MAYBE_PATH or "default")]

cc_library(name = "lib", srcs = ["lib.cc"])

cc_test(
    name = "a_test",
    srcs = ["a_test.cc"],
    args = _ARGS,
    tags = {t: None for t in SOME_LIST + ["vm"]}.keys(),
)

cc_test(
    name = "b_test",
    srcs = glob(["sub/*_test.cc"]),
    data = dict({"k": 1}.items() + [("j", 2)]).keys(),
)

sh_test(
    name = "py_test",
    srcs = ["//pkg/testing:run_py_test.sh"],
    args = ["pkg/t_test.py"],
    data = ["t_test.py"],
)

sh_test(name = "sh_test", srcs = ["s_test.sh"])
"""

A_TEST = """\
#include "gtest/gtest.h"
TEST(Plain, Works) {}
TEST_F(Fixture, AlsoWorks) {
}
// TEST(Plain, CommentedOut) {}
TEST_P(Param, Case) {}
INSTANTIATE_TEST_SUITE_P(
    Cases, Param,
    ::testing::Values(1, 2));
"""

LIB = """\
const Row kRows[] = {{"cgroup-rw", 1}, {"cgroup_off", 2}};
"""

B_TEST = "TEST(Sub, InSubdir) {}\n"

T_TEST = """\
import unittest
class Good(unittest.TestCase):
    def test_one(self):
        pass

    def helper(self):
        pass

class Other(unittest.TestCase):
    def test_two(self):
        pass
"""

S_TEST = """\
#!/bin/sh
check_the_thing() { true; }
function other_check() { true; }
"""

GOOD_SPEC = """\
# spec

Intro paragraph naming `//nowhere:at_all` in prose, which is not a reference.

```
1. inside a fence: not a promise
   Test: `//nowhere:x` `Not.Checked`
```

## Part

1. A plain gtest case.
   Test: `//pkg:a_test` `Plain.Works`
2. A fixture case, two references on one line and a note.
   Test: `//pkg:a_test` `Fixture.AlsoWorks`; `//pkg:b_test` `Sub.InSubdir` (subdir source)
3. A parameterised case, three ways.
   Test: `//pkg:a_test` `Param.Case`
   Test: `//pkg:a_test` `Cases/Param.Case`
   Test: `//pkg:a_test` `Cases/Param.Case/cgroup_rw`; `//pkg:a_test` `Cases/Param.Case/cgroup_off`
4. Python and shell.
   Test: `//pkg:py_test` `Good.test_one`; `//pkg:py_test` `test_two`
   Test: `//pkg:sh_test` `check_the_thing`; `//pkg:sh_test` `other_check`
5. A whole target.
   Test: `//pkg:sh_test`
6. Not tested yet.
   Test: [test pending] needs a host with KVM, which CI does not have
"""


class SpecCheckTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)
        self.write("WORKSPACE", "")
        self.write("pkg/BUILD", BUILD)
        self.write("pkg/a_test.cc", A_TEST)
        self.write("pkg/lib.cc", LIB)
        self.write("pkg/sub/b_test.cc", B_TEST)
        self.write("pkg/t_test.py", T_TEST)
        self.write("pkg/s_test.sh", S_TEST)
        self.write("pkg/testing/BUILD", 'exports_files(["run_py_test.sh"])\n')
        self.write("pkg/testing/run_py_test.sh", "#!/bin/sh\n")

    def write(self, path, text):
        full = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as fh:
            fh.write(text)

    def check(self, spec):
        self.write("SPECIFICATION.md", textwrap.dedent(spec))
        return spec_check.check(self.root, os.path.join(self.root, "SPECIFICATION.md"))

    def assertOneError(self, spec, *fragments):
        _, errors = self.check(spec)
        self.assertEqual(len(errors), 1, errors)
        for f in fragments:
            self.assertIn(f, errors[0])
        return errors[0]

    def test_good_spec_passes(self):
        promises, errors = self.check(GOOD_SPEC)
        self.assertEqual(errors, [])
        self.assertEqual([p.number for p in promises], [1, 2, 3, 4, 5, 6])
        self.assertEqual(sum(len(p.refs) for p in promises), 12)
        self.assertEqual(promises[5].pending, ["needs a host with KVM, which CI does not have"])

    def test_cli_exit_codes_and_summary(self):
        self.write("SPECIFICATION.md", GOOD_SPEC)
        p = subprocess.run([sys.executable, CHECKER, "--root", self.root],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("6 promises, 12 test references, 1 with a pending test (6): OK", p.stdout)
        self.write("SPECIFICATION.md", "1. x\n   Test: `//pkg:gone_test`\n")
        p = subprocess.run([sys.executable, CHECKER, "--root", self.root],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("SPECIFICATION.md:2: promise 1: //pkg:gone_test is not declared", p.stdout)
        p = subprocess.run([sys.executable, CHECKER, "--root", self.root, "nope.md"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)

    def test_missing_target_fails(self):
        err = self.assertOneError("1. x\n   Test: `//pkg:c_test` `Plain.Works`\n",
                                  "SPECIFICATION.md:2", "//pkg:c_test is not declared in pkg/BUILD")
        self.assertIn("a_test, b_test", err)  # it lists what is there

    def test_missing_package_fails(self):
        self.assertOneError("1. x\n   Test: `//nopkg:a_test`\n", "no package //nopkg")

    def test_missing_case_fails(self):
        self.assertOneError("1. x\n   Test: `//pkg:a_test` `Plain.Missing`\n",
                            "//pkg:a_test has no test Plain.Missing", "pkg/a_test.cc")

    def test_renamed_case_fails(self):
        spec = "1. x\n   Test: `//pkg:a_test` `Fixture.AlsoWorks`\n"
        self.assertEqual(self.check(spec)[1], [])
        self.write("pkg/a_test.cc", A_TEST.replace("AlsoWorks", "NowCalledSomethingElse"))
        self.assertOneError(spec, "has no test Fixture.AlsoWorks")

    def test_case_in_another_target_of_the_package_fails(self):
        self.assertOneError("1. x\n   Test: `//pkg:b_test` `Plain.Works`\n",
                            "//pkg:b_test has no test Plain.Works", "pkg/sub/b_test.cc")

    def test_commented_out_case_does_not_count(self):
        self.assertOneError("1. x\n   Test: `//pkg:a_test` `Plain.CommentedOut`\n",
                            "has no test Plain.CommentedOut")

    def test_renamed_target_fails(self):
        spec = "1. x\n   Test: `//pkg:a_test` `Plain.Works`\n"
        self.write("pkg/BUILD", BUILD.replace('"a_test"', '"a_renamed_test"'))
        self.assertOneError(spec, "//pkg:a_test is not declared")

    def test_parameterised_names(self):
        self.assertOneError("1. x\n   Test: `//pkg:a_test` `Other/Param.Case`\n",
                            "no INSTANTIATE_TEST_SUITE_P(Other, Param", "instantiated as: Cases")
        self.assertOneError("1. x\n   Test: `//pkg:a_test` `Cases/Param.Case/cgroup_ro`\n",
                            "no parameter named 'cgroup_ro'")
        self.assertOneError("1. x\n   Test: `//pkg:a_test` `Cases/Plain.Works`\n",
                            "Plain.Works is not a TEST_P")
        self.assertOneError("1. x\n   Test: `//pkg:a_test` `Param.Case/cgroup_rw`\n",
                            "malformed test case")

    def test_python_and_shell_names(self):
        self.assertOneError("1. x\n   Test: `//pkg:py_test` `Other.test_one`\n",
                            "no test method test_one in class Other")
        self.assertOneError("1. x\n   Test: `//pkg:py_test` `Good.helper`\n",
                            "'helper' is not a unittest test method")
        self.assertOneError("1. x\n   Test: `//pkg:sh_test` `no_such_check`\n",
                            "has no function no_such_check()")

    def test_non_test_target_fails(self):
        self.assertOneError("1. x\n   Test: `//pkg:lib`\n", "//pkg:lib is a cc_library, not a test")

    def test_duplicate_numbers_fail(self):
        self.assertOneError(
            "1. x\n   Test: `//pkg:sh_test`\n\n## B\n\n1. y\n   Test: `//pkg:sh_test`\n",
            "SPECIFICATION.md:6: promise number 1 is used twice (first at line 1)")

    def test_promise_without_a_test_fails(self):
        self.assertOneError("1. x\n   Test: `//pkg:sh_test`\n2. y, untested\n\n3. z\n   Test: `//pkg:sh_test`\n",
                            "SPECIFICATION.md:3: promise 2 names no test")
        # A Test: line after the promise has ended (an unindented paragraph) is not its test.
        _, errors = self.check("1. x\n\nA paragraph.\n   Test: `//pkg:sh_test`\n")
        self.assertEqual(len(errors), 2, errors)

    def test_pending_needs_a_reason(self):
        self.assertOneError("1. x\n   Test: [test pending]\n", "[test pending] needs a reason")
        self.assertEqual(self.check("1. x\n   Test: [test pending]: the VMM is absent here\n")[1], [])

    def test_malformed_references_fail(self):
        for ref, want in [
            ("pkg:a_test", "malformed reference"),
            ("`pkg:a_test`", "malformed label 'pkg:a_test'"),
            ("`//pkg`", "malformed label '//pkg'"),
            ("`@repo//pkg:a_test`", "malformed label"),
            ("`//pkg/../x:a_test`", "'.' or '..'"),
            ("`//pkg:a_test` `Plain.Works.Too`", "malformed test case"),
            ("`//pkg:a_test` Plain.Works", "malformed reference"),
            ("`//pkg:a_test` `Plain.Works` trailing words", "malformed reference"),
            ("`//pkg:a_test`;", "malformed reference ''"),
        ]:
            with self.subTest(ref=ref):
                self.assertOneError(f"1. x\n   Test: {ref}\n", want)

    def test_unparsable_build_file_is_reported_once(self):
        self.write("pkg/BUILD", "cc_test(name = \n")
        self.assertOneError("1. x\n   Test: `//pkg:a_test`; `//pkg:b_test`\n2. y\n   Test: `//pkg:a_test`\n",
                            "SPECIFICATION.md:2: promise 1: cannot read pkg/BUILD")


if __name__ == "__main__":
    unittest.main()
