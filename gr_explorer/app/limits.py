"""The server's resource limits: what one browser user may ask of the app, declared once.

Why: a browser user is untrusted, and every unbounded number is a way to take the server down for everyone:
3e7 in "Train images" cost 123 s of CPU and 12 GB before "Unexpected error (MemoryError)", and one uploaded 1 KB
card (`"kwargs": {"depth": 20000}`) held the server for 12 minutes. The limits are settings (settings.py: each
declared once, with its rule and help), read from one place the server's admin controls:

* `GR_EXPLORER_LIMITS`: a JSON object, e.g. `{"max_images": 50000, "job_seconds": 3600}`;
* else `.streamlit/secrets.toml`: `[gr_explorer.limits]` with the same keys;
* else the defaults below (sized for a small CPU server: ViT-B/16 fits, 20,000 images per split).

Each limit is checked before the work it bounds, and a request beyond it is refused with a ResourceError that
names the limit, the request and what is valid: image counts and bootstrap resamples before a job starts (and
'all' once the dataset's size is known, before any feature is extracted), a model's parameters and FLOPs on the
meta device before it is built (models/budget.py), a job's wall-clock time while it runs (jobs.py stops it at
the next batch and keeps what was finished), and the feature cache's size as it is written (cache.py evicts).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import streamlit as st

from ..cache import FeatureCache
from ..config import MAX_BOOTSTRAP, SweepConfig
from ..errors import ConfigError, ResourceError
from ..models.budget import Budget
from ..settings import MAX_IMAGES, Interval, Settings, setting
from ..training import TrainConfig
from .roots import SECRETS_SECTION, DataRoots

ENV_VAR = "GR_EXPLORER_LIMITS"
SECRETS_KEY = "limits"
CACHE_FOLDER = "cache"
ADMIN = f"the server's admin sets this limit ({ENV_VAR} or [{SECRETS_SECTION}.{SECRETS_KEY}] in .streamlit/secrets.toml)"


@dataclass(frozen=True)
class ServerLimits(Settings):
    """One server's caps on what a browser user may ask for."""

    error = ConfigError
    what = "server limits"

    max_images: int = setting(
        20_000, "images per split a sweep or a training run may use (n_train, n_test; 'all' only for a split this "
                "small)", Interval(int, 1, MAX_IMAGES))
    max_bootstrap: int = setting(
        5_000, "bootstrap resamples of one sweep", Interval(int, 100, MAX_BOOTSTRAP))
    max_params: int = setting(
        100_000_000, "parameters of one model, counted on the meta device before it is built (ViT-B/16: 86M)",
        Interval(int, 1, None))
    max_gflops: float = setting(
        50.0, "forward GFLOPs per image at the model's input size (ViT-B/16 at 224 px: 35)",
        Interval(float, 0, None, "neither"))
    build_seconds: float = setting(
        20.0, "seconds laying out a model on the meta device may take before it is refused", Interval(float, 0, None,
                                                                                                        "neither"))
    job_seconds: float = setting(
        1800.0, "wall-clock seconds one job (a sweep, a training run) may run; it is stopped at its next batch "
                "after that, and what it finished is kept", Interval(float, 0, None, "neither"))
    cache_gb: float = setting(
        10.0, "GB the app's feature cache (cache/ in the first data root) may hold; the least recently used entries "
              "are removed beyond it", Interval(float, 0, None, "neither"))

    @classmethod
    def configured(cls) -> "ServerLimits":
        """The limits of this server (read on every call: admins and tests change them)."""
        text = os.environ.get(ENV_VAR, "").strip()
        if text:
            try:
                values = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{ENV_VAR} is not valid JSON: {e}. Valid: a JSON object such as "
                                  f"'{{\"max_images\": 50000}}'.") from None
            return cls.from_dict(values, source=ENV_VAR)
        try:
            if st.secrets.load_if_toml_exists():
                values = (st.secrets.get(SECRETS_SECTION) or {}).get(SECRETS_KEY)
                if values:
                    return cls.from_dict(dict(values), source=f"[{SECRETS_SECTION}.{SECRETS_KEY}] in secrets.toml")
        except (FileNotFoundError, OSError):  # a secrets file that cannot be read: the defaults
            pass
        return cls()

    # -- what the limits turn into ------------------------------------------------------------------
    def budget(self) -> Budget:
        return Budget(max_params=self.max_params, max_flops=self.max_gflops * 1e9, max_build_s=self.build_seconds)

    def cache(self, roots: DataRoots) -> FeatureCache:
        """The app's feature cache: under the first data root, capped at cache_gb (LRU by entry)."""
        return FeatureCache(roots.folder(CACHE_FOLDER), max_bytes=int(self.cache_gb * 2**30))

    # -- checks, before the work --------------------------------------------------------------------
    def _images(self, what: str, value: int | None, have: int | None = None) -> None:
        asked = value if value is not None else have
        if asked is not None and asked > self.max_images:
            shown = f"{value:,}" if value is not None else f"all ({have:,})"
            raise ResourceError(f"{what} = {shown} images is more than this server allows per split "
                                f"({self.max_images:,}). Valid: at most {self.max_images:,}; {ADMIN}.")

    def check_sweep(self, config: SweepConfig) -> None:
        """Image counts and bootstrap resamples of a sweep ('all' is checked once the dataset is loaded)."""
        self._images("Train images (n_train)", config.n_train)
        self._images("Test images (n_test)", config.n_test)
        if config.bootstrap > self.max_bootstrap:
            raise ResourceError(f"bootstrap = {config.bootstrap:,} resamples is more than this server allows "
                                f"({self.max_bootstrap:,}). Valid: at most {self.max_bootstrap:,}; {ADMIN}.")

    def check_dataset(self, config: SweepConfig, n_train: int, n_test: int) -> None:
        """A loaded dataset's splits, for settings that asked for 'all' of them."""
        self._images("Train images (n_train)", config.n_train, n_train)
        self._images("Test images (n_test)", config.n_test, n_test)

    def check_training(self, config: TrainConfig) -> None:
        self._images("Training images (n_train)", config.n_train)
        if config.n_train is None:
            raise ResourceError(f"Training images (n_train) = all is not allowed on this server. Valid: a number, at "
                                f"most {self.max_images:,}; {ADMIN}.")

    def time_text(self) -> str:
        return (f"The job passed this server's time limit of {self.job_seconds:,.0f} s and was stopped at its next "
                f"batch; what it finished is kept. Valid: fewer images, cuts or models (or fewer epochs); {ADMIN}.")


def limits() -> ServerLimits:
    return ServerLimits.configured()


__all__ = ["CACHE_FOLDER", "ENV_VAR", "ServerLimits", "limits"]
