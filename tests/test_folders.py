"""The typed folders own their files: no other module names a folder's file, and each record has one reader
that says which file is at fault."""
import ast
import json
from pathlib import Path

import pytest

from unlearnable import DataError
from unlearnable.data.folders import DefendedDir, ProtectionDir, PublishedDir, ReportDir, RunDir

ROOT = Path(__file__).resolve().parents[1]
OWNER = ROOT / "src" / "unlearnable" / "data" / "folders.py"
FOLDER_FILES = {ProtectionDir.RECORD, ProtectionDir.NOISE, ProtectionDir.TRIGGERS, ProtectionDir.COLOUR,
                ProtectionDir.UNITS, PublishedDir.RECORD, DefendedDir.RECORD, *RunDir.FILES.values(),
                *ReportDir.FILES.values()} - {"results.csv"}  # also Flickr30k's own captions file (data/sources.py)


def named_files(path: Path) -> set[str]:
    """Folder file names a module spells in code: a string that is one (`"noise.npy"`), or ends a path in one
    (`f"{run}/metrics.json"`). Docstrings and comments may mention them."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= {n for n in FOLDER_FILES if node.value == n or node.value.endswith("/" + n)}
    return found


def code_files() -> list[Path]:
    return sorted(p for d in ("src", "scripts", "bench") for p in (ROOT / d).rglob("*.py") if p != OWNER)


def test_no_module_but_the_folder_types_names_a_folder_file():
    offenders = {str(p.relative_to(ROOT)): sorted(named_files(p)) for p in code_files() if named_files(p)}
    assert offenders == {}


def test_no_rule_names_a_folder_file():
    """The rules ask the layout owner for every path: no quoted folder file name in rules/ or the Snakefile."""
    quoted = {n: (f'"{n}"', f"/{n}\"") for n in FOLDER_FILES}
    offenders = {f"{p.name}: {n}" for p in [*sorted((ROOT / "rules").glob("*.smk")), ROOT / "workflow" / "Snakefile"]
                 for n, forms in quoted.items() if any(f in p.read_text() for f in forms)}
    assert offenders == set()


def test_the_guard_sees_a_file_named_in_code_and_not_in_a_docstring(tmp_path):
    """The guard above is only as good as this reader."""
    module = tmp_path / "m.py"
    module.write_text('"""Reads protection.json."""\nX = "noise.npy"\nY = f"{run}/metrics.json"\n'
                      'Z = Path(d) / "export.json"\n')
    assert named_files(module) == {"noise.npy", "metrics.json", "export.json"}


def test_a_defended_copy_reads_the_export_record_of_the_folder_it_was_made_from(tmp_path):
    published, defended, clean = tmp_path / "published", tmp_path / "defended", tmp_path / "clean"
    for d in (published, defended, clean):
        d.mkdir()
    PublishedDir(published).write_record({"mlflow_run_id": "pub", "eps": 8})
    DefendedDir(defended).write_record({"defence": "jpeg", "source_store": str(published / "images.npy")})
    assert PublishedDir(published).export_record() == {"mlflow_run_id": "pub", "eps": 8}
    assert PublishedDir(defended).export_record() == {"mlflow_run_id": "pub", "eps": 8}
    assert PublishedDir(defended).export_record_path() == published / PublishedDir.RECORD
    assert PublishedDir(clean).export_record() == {} and PublishedDir(clean).export_record_path() is None


def test_a_broken_record_is_a_one_line_error_naming_its_file(tmp_path):
    (tmp_path / ProtectionDir.RECORD).write_text("{not json")
    with pytest.raises(DataError, match=r"protection\.json: unreadable") as e:
        ProtectionDir(tmp_path).record()
    assert "\n" not in str(e.value)
    (tmp_path / ProtectionDir.RECORD).write_text(json.dumps({"config": {"eps": 8}}))
    assert ProtectionDir(tmp_path).config_value("eps") == 8
    with pytest.raises(DataError, match=r"protection\.json: no recorded granularity"):
        ProtectionDir(tmp_path).config_value("granularity")
