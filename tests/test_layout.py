"""The library's rooms: the method (data, protect, defend, clip) and the owner's road over it never reach into
the workflow app, the report or the command line, so they can be used, and read, without them."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "unlearnable"
METHOD = ("data", "protect", "defend", "clip")
OWNER = "owner"
SHARED = {"__init__.py", "cli.py", "atomic.py", "faults.py", "paths.py", "provenance.py", "usage.py"}
APP = ("unlearnable.workflow", "unlearnable.report", "unlearnable.cli")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module a file imports, relative imports resolved, at any depth in the file."""
    package = ["unlearnable", *path.relative_to(PKG).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # `from . import report` names a module
    return found


@pytest.mark.parametrize("room", (*METHOD, OWNER))
def test_the_method_never_imports_the_app_the_report_or_the_cli(room):
    files = sorted((PKG / room).rglob("*.py"))
    assert files
    for path in files:
        bad = {m for m in imported_modules(path) if any(m == a or m.startswith(a + ".") for a in APP)}
        assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"


def test_the_package_root_holds_only_what_every_room_shares():
    """A stage's module lives in its room; the root keeps the command line and the primitives all rooms use
    (atomic writes, fault messages, path confinement, provenance, memory figures)."""
    loose = {p.name for p in PKG.glob("*.py")} - SHARED
    assert not loose, f"modules at the package root that belong in a room: {sorted(loose)}"


def test_the_import_reader_resolves_relative_imports():
    """The guard above is only as good as this reader: `from ..usage import x` and `from .config import y` in
    protect/engine.py must resolve to their absolute modules."""
    found = imported_modules(PKG / "protect" / "engine.py")
    assert {"unlearnable.usage", "unlearnable.protect.config"} <= found


def test_the_code_passes_ruff():
    """pyflakes and pycodestyle at 120 characters (pyproject.toml's [tool.ruff]) over the library, the tests,
    the scripts and the benchmarks."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a test dependency: pip install -e '.[test]'"
    res = subprocess.run([ruff, "check", "src", "tests", "scripts", "bench"], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout[-3000:]



def test_one_road_trains_and_reads_a_victim():
    """The workflow's jobs and `unlearnable verify` train and read their victims through clip/victim.py, so a fix
    there reaches both front-ends: no other library module calls the trainer or the retrieval evaluation."""
    callers = set()
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in ("train_clip", "evaluate_retrieval"):
                    callers.add(path.relative_to(PKG).as_posix())
    assert callers == {"clip/victim.py"}, callers
