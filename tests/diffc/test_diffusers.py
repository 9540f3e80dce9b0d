"""Tiny random diffusers models built from configs, saved and loaded back through the
from_pretrained path: exact replay of x_t, container round trip, weight fingerprints."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("gencodec.rcc", reason="the native PFR coder gencodec.rcc is needed")

from gencodec.errors import BitstreamError

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")


def make_sd(folder, seed: int, prediction_type: str = "epsilon"):
    from gencodec.filters.tiny import tiny_sd_folder

    return tiny_sd_folder(folder, seed, prediction_type)


@pytest.fixture(scope="module")
def sd_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    a, b, v = root / "a", root / "b", root / "v"
    for d in (a, b, v):
        d.mkdir()
    return make_sd(a, 0), make_sd(b, 1), make_sd(v, 0, "v_prediction")


@pytest.fixture(scope="module")
def sd_profile(tmp_path_factory):
    from gencodec.diffc.profile import Profile

    path = tmp_path_factory.mktemp("sdprof") / "p.json"
    Profile(timesteps=(999, 900, 800), chunk_bits=8, ddim_steps=5).save(path)
    return path


def test_load_and_shapes(sd_dirs):
    from gencodec.diffusion import load_backbone

    bb = load_backbone(str(sd_dirs[0]))
    assert type(bb).__name__ == "StableDiffusion" and bb.pad_multiple == 4
    assert bb.latent_shape(32, 24) == (4, 16, 12)
    x0 = bb.encode_image(np.zeros((32, 24, 3), np.uint8))
    assert x0.shape == (4, 16, 12) and x0.dtype == np.float32
    assert bb.decode_latent(x0).shape == (32, 24, 3)
    assert bb.eps(x0, 500).shape == x0.shape


@pytest.mark.slow
@pytest.mark.parametrize("which", [0, 2], ids=["eps", "v"])
def test_replay_and_round_trip(sd_dirs, sd_profile, photo32, which):
    from gencodec import container
    from gencodec.codecs_ext import get_codec
    from gencodec.diffc import bitstream

    codec = get_codec("diffc", model=str(sd_dirs[which]), profile=str(sd_profile))
    image = np.ascontiguousarray(photo32[:30, :30])  # padded to 32x32
    x0 = codec.backbone.encode_image(codec._pad(image))
    enc = codec.coder.encode_latent(x0, 3)
    x_t, t = codec.coder.replay(bitstream.read_payload(enc.payload), x0.shape)
    assert t == 800 and np.array_equal(x_t, enc.x_t)
    stream = codec.encode(image, quality=3)
    assert container.unpack(stream).header.codec == "diffc"
    assert codec.decode(stream).shape == image.shape


def test_other_weights_are_refused(sd_dirs, sd_profile, photo32):
    from gencodec.codecs_ext import get_codec

    a = get_codec("diffc", model=str(sd_dirs[0]), profile=str(sd_profile))
    b = get_codec("diffc", model=str(sd_dirs[1]), profile=str(sd_profile))
    assert a.fingerprint != b.fingerprint
    stream = a.encode(np.ascontiguousarray(photo32), quality=2)
    with pytest.raises(BitstreamError, match="fingerprint"):
        b.decode(stream)


def make_sdxl(folder):
    """SDXL-style conditioning: pooled text embedding and six size ids."""
    torch.manual_seed(2)
    make_sd(folder, 2)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
        attention_head_dim=2, norm_num_groups=4, addition_embed_type="text_time",
        addition_time_embed_dim=4, projection_class_embeddings_input_dim=1280 + 6 * 4)
    unet.save_pretrained(folder / "unet")
    return folder


def make_flux(folder):
    torch.manual_seed(3)
    diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
        pooled_projection_dim=8, guidance_embeds=True, axes_dims_rope=(2, 2, 4),
    ).save_pretrained(folder / "transformer")
    diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
        latent_channels=4, norm_num_groups=4, layers_per_block=1, sample_size=32,
        scaling_factor=0.3611, shift_factor=0.1159).save_pretrained(folder / "vae")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sdxl", "flux"])
def test_sdxl_and_flux_paths(tmp_path, sd_profile, photo32, kind):
    """The SDXL conditioning and the Flux transformer (packing, ids, guidance, A.3
    transform, VAE shift) run end to end; the decoder replays the encoder's x_t."""
    from gencodec.codecs_ext import get_codec
    from gencodec.diffc import bitstream

    folder = (make_sdxl if kind == "sdxl" else make_flux)(tmp_path)
    codec = get_codec("diffc", model=str(folder), profile=str(sd_profile))
    assert type(codec.backbone).__name__ == ("StableDiffusion" if kind == "sdxl" else "Flux")
    x0 = codec.backbone.encode_image(np.ascontiguousarray(photo32))
    assert x0.shape == (4, 16, 16)
    enc = codec.coder.encode_latent(x0, 3)
    x_t, _ = codec.coder.replay(bitstream.read_payload(enc.payload), x0.shape)
    assert np.array_equal(x_t, enc.x_t)
    out = codec.decode(codec.encode(np.ascontiguousarray(photo32), quality=2))
    assert out.shape == photo32.shape


def test_sdxl_refiner_below_t200(tmp_path):
    """The refiner runs for t <= 200 and is part of the fingerprint."""
    from gencodec.codecs_ext import get_codec
    from gencodec.diffc.profile import Profile

    (tmp_path / "base").mkdir()
    (tmp_path / "ref").mkdir()
    base, ref = make_sdxl(tmp_path / "base"), make_sd(tmp_path / "ref", 4)
    Profile(timesteps=(999, 400, 150), chunk_bits=8, recon="x0").save(tmp_path / "p.json")
    plain = get_codec("diffc", model=str(base), profile=str(tmp_path / "p.json"))
    refined = get_codec("diffc", model=str(base), profile=str(tmp_path / "p.json"),
                        refiner=str(ref))
    assert plain.fingerprint != refined.fingerprint
    x = np.random.default_rng(0).standard_normal((4, 16, 16)).astype(np.float32)
    assert np.array_equal(plain.backbone.eps(x, 300), refined.backbone.eps(x, 300))
    assert not np.array_equal(plain.backbone.eps(x, 150), refined.backbone.eps(x, 150))


def test_fingerprint_ignores_files_diffusers_does_not_load(sd_dirs, tmp_path):
    """A hub snapshot holds fp16 / non-EMA variants, a clone .bin copies too: hashing
    every file gave the same weights a different fingerprint on another machine (and
    downloaded every variant). Only what from_pretrained reads counts."""
    import shutil

    from gencodec.diffusion import load_backbone
    from gencodec.diffusion.sd import component_files

    clone = tmp_path / "clone"
    shutil.copytree(sd_dirs[0], clone)
    weights = clone / "unet" / "diffusion_pytorch_model.safetensors"
    for extra in ("diffusion_pytorch_model.fp16.safetensors",
                  "diffusion_pytorch_model.non_ema.safetensors", "diffusion_pytorch_model.bin"):
        shutil.copy(weights, clone / "unet" / extra)
    (clone / "vae" / "README.md").write_text("notes")
    assert component_files(clone, "unet") == [clone / "unet" / "config.json", weights]
    assert load_backbone(str(clone)).weights_sha256() == \
        load_backbone(str(sd_dirs[0])).weights_sha256()
    # ... but the weights diffusers does load are in it
    shutil.copy(sd_dirs[1] / "unet" / "diffusion_pytorch_model.safetensors", weights)
    assert load_backbone(str(clone)).weights_sha256() != \
        load_backbone(str(sd_dirs[0])).weights_sha256()


def test_sharded_weights_are_fingerprinted_by_their_index(tmp_path):
    from gencodec.diffusion.sd import component_files

    d = tmp_path / "unet"
    d.mkdir()
    shards = ["diffusion_pytorch_model-00001-of-00002.safetensors",
              "diffusion_pytorch_model-00002-of-00002.safetensors"]
    index = d / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": shards[1], "b": shards[0], "c": shards[1]}}))
    for name in shards + ["config.json", "diffusion_pytorch_model.fp16-00001-of-00001.safetensors"]:
        (d / name).write_bytes(b"x")
    assert component_files(tmp_path, "unet") == [d / "config.json", index] + [d / s for s in shards]
