import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """A small shapes dataset written once per test session."""
    from unlearnable.shapes import ShapesConfig, write_shapes

    root = tmp_path_factory.mktemp("shapes") / "shapes"
    write_shapes(root, ShapesConfig(n_images=60, image_size=32, seed=3))
    return root
