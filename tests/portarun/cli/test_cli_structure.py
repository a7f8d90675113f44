"""The CLI parses and prints; the library does the work. These checks read the source with ``ast``:
no function in portarun/cli is over 60 lines, the shared options are defined once, and only the
documented module in portarun/ imports the conformance suite."""

from __future__ import annotations

import ast
from pathlib import Path

import portarun

PACKAGE = Path(portarun.__file__).parent
CLI = PACKAGE / "cli"
MAX_LINES = 60
SUITE_IMPORTER = CLI / "suite.py"  # documented in its docstring and in portarun_conformance's


def _functions(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def long_functions(paths, root: Path = PACKAGE.parent) -> list[str]:
    """``file:line name (N lines)`` for each function longer than MAX_LINES, decorators included."""
    found = []
    for path in paths:
        for node in _functions(path):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            length = node.end_lineno - start + 1
            if length > MAX_LINES:
                found.append(f"{path.relative_to(root)}:{start} {node.name} ({length} lines)")
    return found


def test_no_cli_function_is_over_60_lines():
    modules = sorted(CLI.glob("*.py"))
    assert len(modules) > 5  # the glob found the package
    assert long_functions(modules) == []


def test_the_length_check_catches_a_long_function(tmp_path):
    """The checker itself: a 61-line function is reported, a 60-line one is not."""
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    (tmp_path / "cli").mkdir()
    ok, long = tmp_path / "cli" / "ok.py", tmp_path / "cli" / "long.py"
    ok.write_text(f"def fits():\n{body}\n")
    long.write_text(f"@decorated\ndef too_long():\n{body}\n")
    assert long_functions([ok], tmp_path) == []
    assert long_functions([long], tmp_path) == ["cli/long.py:1 too_long (61 lines)"]


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_only_the_documented_module_imports_the_conformance_suite():
    importers = sorted(str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
                       if any(m.split(".")[0] == "portarun_conformance" for m in _imported_modules(p)))
    assert importers == [str(SUITE_IMPORTER.relative_to(PACKAGE.parent))]
    assert "portarun_conformance" in (SUITE_IMPORTER.read_text().split('"""')[1])


def test_shared_options_are_defined_once():
    """-t/-p/--dim/--seed/--inputs/--json/--warmup/--runs are spelled out only in cli/options.py."""
    shared = {"-t", "--target", "-p", "--precision", "--dim", "--seed", "--inputs", "--json", "--warmup", "--runs"}
    offenders = []
    for path in sorted(CLI.glob("*.py")):
        if path.name == "options.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "option":
                spelled = {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
                if spelled & shared:
                    offenders.append(f"{path.name}:{node.lineno} {sorted(spelled & shared)}")
    assert offenders == []


def test_precision_choices_come_from_the_enum():
    from portarun.cli.options import PrecisionChoice
    from portarun.types import Precision

    assert list(PrecisionChoice().choices) == [p.value for p in Precision]


def test_json_dash_prints_and_a_path_writes(tmp_path):
    """--json means "write JSON to PATH" in every command; '-' is stdout."""
    import json

    from click.testing import CliRunner

    from portarun.cli import main

    printed = CliRunner().invoke(main, ["bench", "builtin:mlp", "-t", "onnxruntime:cpu", "--runs", "1", "--warmup", "0",
                                        "--json", "-"])
    assert printed.exit_code == 0, printed.output
    assert [r["batch"] for r in json.loads(printed.stdout)["rows"]] == [1]
    path = tmp_path / "inspect.json"
    written = CliRunner().invoke(main, ["inspect", "builtin:mlp", "--json", str(path)])
    assert written.exit_code == 0 and "Gemm" in written.output  # the table still prints
    assert json.loads(path.read_text())["op_histogram"]["Gemm"] == 3


def test_precision_aliases_still_parse_and_subsets_refuse_the_rest():
    from click.testing import CliRunner

    from portarun.cli import main

    ran = CliRunner().invoke(main, ["run", "builtin:mlp", "-t", "onnxruntime:cpu", "-p", "float32", "--random"])
    assert ran.exit_code == 0 and "at fp32" in ran.output
    refused = CliRunner().invoke(main, ["quantize", "builtin:mlp", "-p", "fp32", "-o", "x.onnx"])
    assert refused.exit_code == 2 and "fp32" in refused.output and "int8" in refused.output
