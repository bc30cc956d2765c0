"""Shared paths for the Python parity tests."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MARLIN = ROOT / "build" / "marlin"
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
