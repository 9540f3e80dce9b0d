"""Fixtures of the OSDiff tests: tiny random backbones with two rate models each."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers", reason="OSDiff needs gencodec[diffusion]")
pytest.importorskip("gencodec.rcc", reason="the shared noise comes from gencodec.rcc")

_spec = importlib.util.spec_from_file_location("osdiff_tiny", Path(__file__).with_name("tiny.py"))
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)


@pytest.fixture(scope="session")
def osdiff_dirs(tmp_path_factory):
    """Two model folders (backbone + rate models q1, q2) with different random weights."""
    root = tmp_path_factory.mktemp("osdiff")
    return tiny.make_osdiff_dir(root / "a", 0), tiny.make_osdiff_dir(root / "b", 1)


@pytest.fixture(scope="session")
def osdiff_model(osdiff_dirs):
    from gencodec.osdiff.model import OSDiff

    folder = osdiff_dirs[0]
    model = OSDiff.from_backbone(folder, OSDiff.read_config(folder / "osdiff" / "q1"))
    model.load_rate_model(folder / "osdiff" / "q1")
    return model.eval()


@pytest.fixture(scope="session")
def photo48x40(skimage_photos) -> np.ndarray:
    """A 40x48 crop (padded to 48x48 by the tiny model's 16-pixel block)."""
    a = np.ascontiguousarray(skimage_photos["astronaut"][100:180:2, 180:276:2])
    a.setflags(write=False)
    return a
