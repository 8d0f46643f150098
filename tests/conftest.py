from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own feature cache and zoo-free environment unless it asks otherwise."""
    monkeypatch.setenv("GR_EXPLORER_CACHE", str(tmp_path / "feature-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    yield


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} is absent (it sits beside the repo only on the project's machines)")
    return SHARED_DATA
