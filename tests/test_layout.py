"""The folder layout is the architecture: dependencies point down, dev aids stay out."""

from __future__ import annotations

import ast

from devtools.testing import ROOT

PRODUCT = ("runs", "flows", "orchestrator_site")
WEB_MODULES = {"runs.views", "runs.live", "runs.consumers", "runs.workspace", "runs.admin"}


def imports_of(package: str) -> dict[str, set[str]]:
    """Every module of a package and the modules it imports, at any depth of the code."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[module] = names
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module} imports {name}"
        for module, names in imports_of(package).items()
        for name in sorted(names)
        if name.split(".")[0] in forbidden or name in forbidden
    ]


def test_no_product_module_imports_the_development_package_or_the_tests():
    assert [o for p in PRODUCT for o in offenders(p, ("devtools", "tests"))] == []


def test_flows_stays_pure_python_without_django_or_the_app():
    assert offenders("flows", ("django", "runs", "channels", "orchestrator_site")) == []


def test_the_engine_never_reaches_up_into_the_web_layer():
    engine = {m: n for m, n in imports_of("runs").items() if m.startswith("runs.engine")}
    assert engine, "the engine package is missing"
    upward = [f"{m} imports {n}" for m, names in engine.items() for n in names & WEB_MODULES]
    assert upward == []


def test_the_demo_model_is_product_code_the_demo_provider_imports_directly():
    """`demo/scripted` needs no development package: the provider and its scripted server
    live in runs/demo, and nothing there reaches into devtools or tests."""
    demo = imports_of("runs.demo")
    assert {"runs.demo.server", "runs.demo.scripts", "runs.demo.provider"} <= set(demo)
    assert "runs.demo.provider" in imports_of("runs")["runs.engine.agent.modelconfig"]
    assert offenders("runs", ("devtools", "tests")) == []


def test_the_engine_is_grouped_by_what_each_part_does():
    """queue, agent, target, report and web each own their modules; the top holds only the
    seams."""
    engine = ROOT / "runs/engine"
    top = sorted(p.stem for p in engine.glob("*.py"))
    assert top == ["__init__", "crashpoints", "dbthread", "problems", "storable", "worker"]
    groups = sorted(p.name for p in engine.iterdir() if (p / "__init__.py").exists())
    assert groups == ["agent", "queue", "report", "target", "web"]
    assert (engine / "queue/scheduler.py").exists() and (
        engine / "target/secrets/__init__.py"
    ).exists()


def test_every_reset_of_a_step_goes_through_the_one_reset_function():
    """No UPDATE in the engine clears a step's slot, lease, times, output or retry count by
    hand: runs.engine.queue.reset.reset_step says what each moment of an attempt clears."""
    cleared = {
        "holds_slot",
        "wants_slot",
        "lease_owner",
        "lease_expires_at",
        "started_at",
        "first_token_at",
        "finished_at",
        "output",
        "truncated",
        "attempt_base",
    }
    found = []
    for path in sorted((ROOT / "runs" / "engine").rglob("*.py")):
        if path.name == "reset.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "update":
                continue
            for keyword in node.keywords:
                if keyword.arg in cleared and isinstance(keyword.value, ast.Constant):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {keyword.arg}")
    assert found == []


def test_no_test_module_imports_another_test_module():
    """Helpers tests share are fixtures in the conftest.py of their package, not imports from
    another test file (a test file imported twice runs its tests twice)."""
    tests = imports_of("tests")
    test_modules = [m for m in tests if m.rpartition(".")[2].startswith("test_")]
    assert len(test_modules) > 50, "the test modules were not found"
    found = [
        f"{module} imports {name}"
        for module in test_modules
        for name in sorted(tests[module])
        if any(part.startswith("test_") for part in name.split(".")[1:])
        and name.startswith("tests.")
    ]
    assert found == []
