"""Shared paths for the Python parity tests."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# MARLIN_BIN picks another build (e.g. a CPU-only one); scripts/test.sh uses build/marlin.
MARLIN = pathlib.Path(os.environ.get("MARLIN_BIN", ROOT / "build" / "marlin")).resolve()
DEFAULT_MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def marlin_bin():
    if not MARLIN.exists():
        pytest.fail(f"{MARLIN} is missing: run scripts/setup.sh first")
    return MARLIN


@pytest.fixture(scope="session")
def default_model():
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup.sh first")
    return DEFAULT_MODEL
