#!/usr/bin/env python3
"""spec_check: every test that SPECIFICATION.md names must exist.

SPECIFICATION.md is a numbered list of kiln's promises. Each promise names the tests that
prove it on lines of this form (the grammar this checker enforces):

    12. A job that names a secret the host did not deliver is refused ...
        Test: `//agent:server_test` `AgentTest.BuildJobNamingAnUndeliveredSecretIsRefused`
        Test: `//harness:builder_vm_test` `Builder/BuilderVmTest.Group/builder_secrets` (VM)
        Test: [test pending] why there is no test yet

- A promise starts at column 0 with `N. `; N is unique in the file. Its body runs to the next
  promise, heading or unindented line.
- A reference line starts (after indentation) with `Test:` and holds one or more references
  separated by `;`. A reference is a backquoted target label `//package:name` (explicit
  `:name`, no external repository), optionally followed by a backquoted test case, optionally
  followed by a parenthesised note. A label alone means the whole target is the proof.
- A test case is, by the target's sources:
    gtest (.cc/.h)  `Suite.Case` for TEST/TEST_F/TYPED_TEST, or for TEST_P also
                    `Prefix/Suite.Case` (an INSTANTIATE_TEST_SUITE_P(Prefix, Suite, ...) must
                    exist) and `Prefix/Suite.Case/param` (the parameter's name must appear as a
                    string literal in the package, `_` standing for `_` or `-`, as gtest
                    names cannot hold `-`);
    Python (.py)    `test_x` or `Class.test_x` (a unittest method: the name starts with test);
    shell (.sh)     `func` (a function defined in the script).
- `[test pending]` must be followed by a reason. A promise needs at least one reference or a
  pending line.

For each reference the checker reads the package's BUILD file (evaluated as Starlark with
stub rules: every call with a `name=` declares that target), requires a target of that name
whose kind ends in `_test` (or a test_suite), and looks for the case in the target's own
`srcs`, `data` and file `args` (files of the workspace). Targets a macro generates under
other names are not seen: name the macro's own target, or the macro must pass `name` through.

usage: spec_check.py [--root DIR] [SPEC]   (default: SPECIFICATION.md under --root, default .)
exit 0: every reference resolves; 1: errors (one per line, `SPEC:LINE: ...`); 2: usage.
"""

import argparse
import ast
import builtins
import fnmatch
import os
import re
import sys

PROMISE_RE = re.compile(r"^(\d+)\.\s+(\S.*)$")
TEST_LINE_RE = re.compile(r"^\s+Tests?:\s*(.*)$")
PENDING = "[test pending]"
LABEL_RE = re.compile(r"^//((?:[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+)*)?):([A-Za-z0-9_.+-]+)$")
# Prefix/ Suite. Case /param ; Class.test_x ; test_x ; func
CASE_RE = re.compile(
    r"^(?:(?P<prefix>[A-Za-z_]\w*)/)?(?:(?P<suite>[A-Za-z_]\w*)\.)?(?P<case>[A-Za-z_]\w*)"
    r"(?:/(?P<param>\w+))?$")
# One reference: `label`, optional `case`, optional (note).
REF_RE = re.compile(r"^`(?P<label>[^`]*)`(?:\s+`(?P<case>[^`]*)`)?(?:\s+\((?P<note>[^()]*)\))?$")

GTEST_EXT = (".cc", ".cpp", ".cxx", ".h", ".hpp")
PY_EXT = (".py",)
SH_EXT = (".sh", ".bash")


class Reference:
    def __init__(self, line, label, package, target, case):
        self.line, self.label, self.package, self.target, self.case = (
            line, label, package, target, case)


class Promise:
    def __init__(self, number, line):
        self.number, self.line = number, line
        self.refs = []
        self.pending = []  # reasons
        self.has_test_line = False


# ---- SPECIFICATION.md -----------------------------------------------------------------------

def parse_spec(text, spec_name="SPECIFICATION.md"):
    """Returns (promises, errors). Errors are 'SPEC:LINE: message' strings."""
    promises, errors = [], []
    current = None
    in_fence = False
    for n, line in enumerate(text.splitlines(), start=1):
        where = f"{spec_name}:{n}"
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        m = PROMISE_RE.match(line)
        if m:
            current = Promise(int(m.group(1)), n)
            promises.append(current)
            continue
        if line.startswith("#") or (line.strip() and not line[0].isspace()):
            current = None  # a heading or paragraph ends the promise
            continue
        t = TEST_LINE_RE.match(line)
        if not t:
            continue
        if current is None:
            errors.append(f"{where}: a Test: line outside a numbered promise")
            continue
        current.has_test_line = True
        body = t.group(1).strip()
        if body.startswith(PENDING):
            reason = body[len(PENDING):].strip(" :-\u2014")
            if len(reason) < 10:
                errors.append(f"{where}: promise {current.number}: {PENDING} needs a reason "
                              f"(why there is no test yet)")
            current.pending.append(reason)
            continue
        if not body:
            errors.append(f"{where}: promise {current.number}: empty Test: line")
            continue
        for item in split_refs(body):
            ref, err = parse_ref(item.strip(), n)
            if err:
                errors.append(f"{where}: promise {current.number}: {err}")
            else:
                current.refs.append(ref)
    seen = {}
    for p in promises:
        if p.number in seen:
            errors.append(f"{spec_name}:{p.line}: promise number {p.number} is used twice "
                          f"(first at line {seen[p.number]})")
        else:
            seen[p.number] = p.line
        if not p.has_test_line:
            errors.append(f"{spec_name}:{p.line}: promise {p.number} names no test (add a "
                          f"`Test:` line, or `Test: {PENDING} <reason>`)")
    return promises, errors


def split_refs(body):
    """Splits on ';' outside backquotes and parentheses."""
    items, cur, tick, depth = [], [], False, 0
    for ch in body:
        if ch == "`":
            tick = not tick
        elif not tick and ch == "(":
            depth += 1
        elif not tick and ch == ")":
            depth -= 1
        if ch == ";" and not tick and depth == 0:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur))
    return items


def parse_ref(item, line):
    m = REF_RE.match(item)
    if not m:
        return None, (f"malformed reference {item!r}: want `//package:target` optionally "
                      f"followed by `Suite.Case` and a (note)")
    label = m.group("label")
    lm = LABEL_RE.match(label)
    if not lm:
        return None, f"malformed label {label!r}: want //package:target"
    package = lm.group(1)
    if any(part in (".", "..") for part in package.split("/")):
        return None, f"malformed label {label!r}: '.' or '..' in the package"
    case = m.group("case")
    if case is not None:
        cm = CASE_RE.match(case)
        if not cm or (cm.group("param") and not cm.group("prefix")):
            return None, (f"malformed test case {case!r} for {label}: want Suite.Case, "
                          f"Prefix/Suite.Case[/param], Class.test_x, test_x or a function name")
    return Reference(line, label, package, lm.group(2), case), None


# ---- BUILD files ----------------------------------------------------------------------------

class _Anything:
    """A stand-in for whatever a BUILD file loads from a .bzl (a constant, a macro, a struct):
    it can be called, added, iterated (empty), indexed, and it is falsy, so expressions such
    as `X or "default"` and `A + B` evaluate."""

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __add__(self, other):
        return other

    def __radd__(self, other):
        return other

    def __iter__(self):
        return iter(())

    def __getitem__(self, key):
        return _Anything()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()

    def __bool__(self):
        return False

    def __len__(self):
        return 0

    def __str__(self):
        return ""

    def __mod__(self, other):
        return ""

    def __hash__(self):
        return 0


class _Rule(_Anything):
    """Any rule or macro: a call with a string `name=` declares a target of that name."""

    def __init__(self, kind, targets):
        self.kind, self.targets = kind, targets

    def __call__(self, *args, **kwargs):
        name = kwargs.get("name")
        if isinstance(name, str):
            self.targets[name] = (self.kind, kwargs)
        return _Anything()


class _StarlarkDictViews(ast.NodeTransformer):
    """Starlark's dict.items()/keys()/values() are lists (`d.items() + [...]` is valid)."""

    def visit_Call(self, node):
        self.generic_visit(node)
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in ("items", "keys", "values") and not (
                node.args or node.keywords):
            return ast.copy_location(
                ast.Call(func=ast.Name(id="list", ctx=ast.Load()), args=[node], keywords=[]), node)
        return node


class BuildFile:
    """The targets one BUILD file declares: name -> (kind, attrs)."""

    def __init__(self, root, package):
        self.root, self.package = root, package
        self.dir = os.path.join(root, package)
        self.targets = {}
        self.path = None
        self.error = None
        for name in ("BUILD", "BUILD.bazel"):
            p = os.path.join(self.dir, name)
            if os.path.isfile(p):
                self.path = p
                break

    def load(self):
        """Returns an error message or None."""
        if self.path is None:
            return f"no package //{self.package} (no BUILD file in {self.package or '.'}/)"
        with open(self.path, encoding="utf-8") as fh:
            text = fh.read()
        try:
            tree = ast.fix_missing_locations(
                _StarlarkDictViews().visit(ast.parse(text, filename=self.path)))
        except SyntaxError as e:
            return f"cannot read {self.rel(self.path)}: {e}"
        env = {"__builtins__": builtins}
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        for name in names:
            if not hasattr(builtins, name):
                env[name] = self._rule(name)
        env.update(load=lambda *a, **k: None, glob=self._glob, select=self._select,
                   package_name=lambda: self.package, Label=lambda s: s)
        try:
            exec(compile(tree, self.path, "exec"), env)
        except Exception as e:  # a Starlark construct these stubs do not model
            return f"cannot evaluate {self.rel(self.path)}: {type(e).__name__}: {e}"
        return None

    def rel(self, path):
        return os.path.relpath(path, self.root)

    def _rule(self, kind):
        return _Rule(kind, self.targets)

    def _glob(self, include, exclude=(), **kwargs):
        out = []
        for dirpath, dirnames, filenames in os.walk(self.dir):
            rel_dir = os.path.relpath(dirpath, self.dir)
            if rel_dir != "." and any(os.path.isfile(os.path.join(dirpath, b))
                                      for b in ("BUILD", "BUILD.bazel")):
                dirnames[:] = []
                continue
            for f in filenames:
                rel = os.path.normpath(os.path.join(rel_dir, f))
                if any(_glob_match(rel, p) for p in include) and not any(
                        _glob_match(rel, p) for p in exclude):
                    out.append(rel)
        return sorted(out)

    @staticmethod
    def _select(branches, **kwargs):
        values = list(branches.values())
        if values and all(isinstance(v, list) for v in values):
            return [x for v in values for x in v]
        return values[0] if values else _Anything()


def _glob_match(path, pattern):
    """Bazel glob semantics: `*` stays within a path segment, `**` spans segments."""
    parts = pattern.split("/")
    rx = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            rx += ".+" if last else "(?:[^/]+/)*"
        else:
            rx += re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            rx += "" if last else "/"
    return re.fullmatch(rx, path) is not None


def target_files(root, build, attrs):
    """Workspace files among a target's srcs, data and args (paths relative to root)."""
    out = []
    items = []
    for key in ("srcs", "data"):
        v = attrs.get(key)
        if isinstance(v, (list, tuple)):
            items += [x for x in v if isinstance(x, str)]
    args = attrs.get("args")
    if isinstance(args, (list, tuple)):
        items += [x for x in args if isinstance(x, str) and "$(" not in x and not x.startswith("-")]
    for item in items:
        if item.startswith("@"):
            continue
        if item.startswith("//"):
            pkg, _, name = item[2:].partition(":")
            path = os.path.join(pkg, name) if name else None
        elif item.startswith(":"):
            path = os.path.join(build.package, item[1:])
        elif "/" in item and os.path.isfile(os.path.join(root, item)) and not os.path.isfile(
                os.path.join(build.dir, item)):
            path = item  # an args path relative to the workspace root
        else:
            path = os.path.join(build.package, item)
        if path and os.path.isfile(os.path.join(root, path)):
            path = os.path.normpath(path)
            if path not in out:
                out.append(path)
    return out


# ---- test cases in sources ------------------------------------------------------------------

GTEST_RE = re.compile(
    r"^[ \t]*(TEST|TEST_F|TEST_P|TYPED_TEST|TYPED_TEST_P)\(\s*(\w+)\s*,\s*(\w+)\s*\)", re.M)
INSTANTIATE_RE = re.compile(
    r"^[ \t]*INSTANTIATE_(?:TEST_SUITE_P|TEST_CASE_P|TYPED_TEST_SUITE_P|TYPED_TEST_CASE_P)"
    r"\(\s*(\w+)\s*,\s*(\w+)\s*,", re.M)
STRING_RE = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def read(root, path):
    with open(os.path.join(root, path), encoding="utf-8", errors="replace") as fh:
        return fh.read()


def find_gtest(root, build, files, ref):
    cm = CASE_RE.match(ref.case)
    prefix, suite, case, param = cm.group("prefix", "suite", "case", "param")
    if suite is None:
        return f"{ref.label}: {ref.case!r} is not a gtest name (want Suite.Case)"
    texts = {f: read(root, f) for f in files}
    kinds = [(f, m.group(1)) for f, t in texts.items() for m in GTEST_RE.finditer(t)
             if m.group(2) == suite and m.group(3) == case]
    if not kinds:
        return (f"{ref.label} has no test {suite}.{case} (looked for TEST*({suite}, {case}) in "
                f"{', '.join(files)})")
    if prefix is None:
        return None
    if not any(k in ("TEST_P", "TYPED_TEST_P") for _, k in kinds):
        return f"{ref.label}: {suite}.{case} is not a TEST_P, so it has no {prefix}/ prefix"
    prefixes = {m.group(1) for t in texts.values() for m in INSTANTIATE_RE.finditer(t)
                if m.group(2) == suite}
    if prefix not in prefixes:
        return (f"{ref.label}: no INSTANTIATE_TEST_SUITE_P({prefix}, {suite}, ...) (instantiated "
                f"as: {', '.join(sorted(prefixes)) or 'nothing'})")
    if param is None:
        return None
    # Parameter names come from data (e.g. a scenario table in a library of the package).
    want = re.compile("^" + re.escape(param).replace("_", "[-_]") + "$")
    for dirpath, _, filenames in os.walk(build.dir):
        for f in filenames:
            if f.endswith(GTEST_EXT):
                text = read(root, os.path.relpath(os.path.join(dirpath, f), root))
                if any(want.match(s) for s in STRING_RE.findall(text)):
                    return None
    return (f"{ref.label}: no parameter named {param!r} (no string literal "
            f"{param.replace('_', '-')!r} or {param!r} in //{build.package}'s C++ sources)")


def find_python(root, files, ref):
    cm = CASE_RE.match(ref.case)
    if cm.group("prefix") or cm.group("param"):
        return f"{ref.label}: {ref.case!r} is not a Python test name (want Class.test_x or test_x)"
    cls, case = cm.group("suite"), cm.group("case")
    if not case.startswith("test"):
        return f"{ref.label}: {case!r} is not a unittest test method (its name must start with test)"
    for f in files:
        lines = read(root, f).splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)def\s+" + re.escape(case) + r"\s*\(", line)
            if not m:
                continue
            if cls is None or _enclosing_class(lines, i, len(m.group(1))) == cls:
                return None
    where = f"class {cls}" if cls else "any class"
    return f"{ref.label} has no test method {case} in {where} (in {', '.join(files)})"


def _enclosing_class(lines, i, indent):
    for j in range(i - 1, -1, -1):
        line = lines[j]
        if not line.strip():
            continue
        ind = len(line) - len(line.lstrip())
        if ind < indent:
            m = re.match(r"^\s*class\s+(\w+)", line)
            return m.group(1) if m else None
    return None


def find_shell(root, files, ref):
    if not re.fullmatch(r"[A-Za-z_]\w*", ref.case):
        return f"{ref.label}: {ref.case!r} is not a shell function name"
    rx = re.compile(r"^\s*(?:function\s+)?" + re.escape(ref.case) + r"\s*\(\s*\)", re.M)
    for f in files:
        if rx.search(read(root, f)):
            return None
    return f"{ref.label} has no function {ref.case}() (in {', '.join(files)})"


# ---- the check ------------------------------------------------------------------------------

def check_ref(root, builds, ref):
    build = builds.get(ref.package)
    if build is None:
        build = BuildFile(root, ref.package)
        build.error = build.load()
        builds[ref.package] = build
    if build.error:
        return build.error
    if ref.target not in build.targets:
        tests = sorted(n for n, (k, _) in build.targets.items() if k.endswith("_test"))
        return (f"{ref.label} is not declared in {build.rel(build.path)} (its tests: "
                f"{', '.join(tests) or 'none'})")
    kind, attrs = build.targets[ref.target]
    if not (kind.endswith("_test") or kind == "test_suite"):
        return f"{ref.label} is a {kind}, not a test"
    if ref.case is None:
        return None
    if kind == "test_suite":
        return f"{ref.label} is a test_suite: name its tests, not a case"
    files = target_files(root, build, attrs)
    gtest = [f for f in files if f.endswith(GTEST_EXT)]
    py = [f for f in files if f.endswith(PY_EXT)]
    sh = [f for f in files if f.endswith(SH_EXT)]
    if gtest:
        return find_gtest(root, build, gtest, ref)
    if py:
        return find_python(root, py, ref)
    if sh:
        return find_shell(root, sh, ref)
    return f"{ref.label} has no C++, Python or shell sources to find {ref.case} in"


def check(root, spec_path):
    """Returns (promises, errors)."""
    spec_name = os.path.relpath(spec_path, root) if os.path.isabs(spec_path) else spec_path
    with open(spec_path, encoding="utf-8") as fh:
        promises, errors = parse_spec(fh.read(), spec_name)
    builds = {}
    for p in promises:
        for ref in p.refs:
            reported = ref.package in builds and builds[ref.package].error
            err = check_ref(root, builds, ref)
            if err and not reported:  # a broken BUILD file is reported once, not per reference
                errors.append(f"{spec_name}:{ref.line}: promise {p.number}: {err}")
    return promises, errors


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".", help="workspace root (default: .)")
    ap.add_argument("spec", nargs="?", help="the specification (default: ROOT/SPECIFICATION.md)")
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    spec = args.spec or os.path.join(root, "SPECIFICATION.md")
    if not os.path.isfile(spec):
        print(f"spec_check: no such file: {spec}", file=sys.stderr)
        return 2
    promises, errors = check(root, spec)
    for e in errors:
        print(e)
    refs = sum(len(p.refs) for p in promises)
    pending = [p.number for p in promises if p.pending]
    print(f"spec_check: {len(promises)} promises, {refs} test references, "
          f"{len(pending)} with a pending test{' (' + ', '.join(map(str, pending)) + ')' if pending else ''}"
          f": {'FAIL, ' + str(len(errors)) + ' errors' if errors else 'OK'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
