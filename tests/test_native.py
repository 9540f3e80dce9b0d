"""The native core's build_info()."""

from __future__ import annotations


def test_build_info_keys_and_types():
    from gencodec import _native

    info = _native.build_info()
    assert set(info) == {"compiler", "openmp_threads", "cuda_compiled", "cuda_devices",
                         "cuda_error"}
    assert isinstance(info["compiler"], str) and info["compiler"]
    assert isinstance(info["openmp_threads"], int) and info["openmp_threads"] >= 1
    assert isinstance(info["cuda_compiled"], bool)
    assert isinstance(info["cuda_devices"], int) and info["cuda_devices"] >= 0
    assert isinstance(info["cuda_error"], str)
    if not info["cuda_compiled"]:
        assert info["cuda_devices"] == 0
        assert info["cuda_error"]  # says why
    elif info["cuda_devices"] == 0:
        assert info["cuda_error"], "no device seen and no reason given"


def test_build_info_is_a_fresh_dict():
    from gencodec import _native

    a = _native.build_info()
    a["compiler"] = "changed"
    assert _native.build_info()["compiler"] != "changed"
