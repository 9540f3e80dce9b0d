"""Fixtures of the DiffC tests: small models, profiles and images (2 cores, < 4 min)."""

from __future__ import annotations

import numpy as np
import pytest

@pytest.fixture(scope="session")
def spectral():
    from gencodec.diffusion import load_backbone

    return load_backbone("gaussian-spectral")


@pytest.fixture(scope="session")
def small_profile():
    """Eight steps down to t=20, 8-bit chunks: fast at 32x32."""
    from gencodec.diffc.profile import Profile

    return Profile(timesteps=(999, 600, 400, 250, 150, 90, 45, 20), chunk_bits=8)


@pytest.fixture(scope="session")
def profile_file(tmp_path_factory, small_profile):
    path = tmp_path_factory.mktemp("profile") / "p.json"
    small_profile.save(path)
    return path


@pytest.fixture(scope="session")
def photo32(skimage_photos) -> np.ndarray:
    a = np.ascontiguousarray(skimage_photos["astronaut"][140:204:2, 200:264:2])
    a.setflags(write=False)
    return a
