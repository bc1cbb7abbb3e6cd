"""Engine test fixtures: the embedded model's directory and tokenizer, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from thunder.models import Tokenizer, load_model_dir


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return load_model_dir("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path) -> Tokenizer:
    return Tokenizer(model_dir)
