"""Fixtures: every test in its own working folder, tiny generated data, and the real photos where they exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import SHARED_DATA, make_dataset


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder: what the CLI writes beside it never lands in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "training_set").is_dir():
        pytest.skip(f"real photos not found at {SHARED_DATA} (the project's ../shared/data/cats_vs_dogs)")
    return SHARED_DATA
