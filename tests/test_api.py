"""The flat public API: light to import, and the README's Python example runs as written."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import unlearnable

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_importing_the_package_loads_no_torch_and_every_public_name_resolves():
    code = ("import sys, unlearnable as ul\nassert 'torch' not in sys.modules, 'torch'\n"
            "missing = [n for n in ul.__all__ if getattr(ul, n, None) is None]\nassert not missing, missing\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    with pytest.raises(AttributeError, match="no attribute 'protect_folders'"):
        unlearnable.protect_folders  # noqa: B018


def test_the_readme_python_example_protects_and_verifies_a_folder(tmp_path, capsys):
    from unlearnable.data.shapes import ShapesConfig, write_shapes

    example = readme_example()
    used = set(re.findall(r"\bul\.(\w+)", example))
    assert used and used <= set(unlearnable.__all__)
    write_shapes(tmp_path / "photos", ShapesConfig(n_images=40, image_size=32, captions_per_image=2, seed=3))
    runnable = (example.replace("path/to/photos", str(tmp_path / "photos"))
                .replace("path/to/out", str(tmp_path / "out"))
                .replace('"rounds": 6, "surrogate_steps": 40', '"rounds": 2, "surrogate_steps": 3')
                .replace("epochs=5", "epochs=1"))
    assert runnable.count(str(tmp_path)) == 3  # the example's paths and schedule, only shrunk
    exec(compile(runnable, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert f"{tmp_path / 'out' / 'published'} 40" in printed  # every photo published
    assert "trained on clean" in printed and "scraper" in printed
    assert (tmp_path / "out" / "private" / unlearnable.ProtectionDir.NOISE).is_file()
