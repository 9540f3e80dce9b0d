"""write_static_embedding: the static text embedding that replaces the text encoder
(Guo et al., Fig. 1), made once with transformers from a tiny SD-layout repository
(CLIP tokenizer and text encoder from configs, the tiny UNet and VAE); the filter
then loads and runs without transformers."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file

from gencodec.errors import InputError, OutputExistsError
from gencodec.filters import load_frame_model
from gencodec.filters.model import CONFIG_NAME
from gencodec.filters.onestep import EMBEDS_NAME, OneStepDiffusion, alphas_cumprod

pytest.importorskip("diffusers", reason="one-step models need gencodec[diffusion]")

LETTERS = "abcdefghijklmnopqrstuvwxyz"
#: CLIP's byte-level BPE vocabulary in miniature: specials, letters, word-final
#: letters, and the merges that make "photo" -> "ph", "oto</w>".
VOCAB = (["<|startoftext|>", "<|endoftext|>"] + list(LETTERS) + [c + "</w>" for c in LETTERS]
         + ["ph", "ot", "oto</w>"])
MERGES = ["#version: 0.2", "p h", "o t", "ot o</w>"]
TOKENS = 8  # the text encoder's max_position_embeddings: the embedding's length L
SCHEDULER = {"_class_name": "DDPMScheduler", "beta_schedule": "scaled_linear",
             "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000,
             "prediction_type": "v_prediction"}


@pytest.fixture
def sd_repo(tmp_path, onestep_dir):
    """A diffusers repository like SD 2.1's: tokenizer/ (vocab.json, merges.txt, no
    model_max_length), text_encoder/, unet/, vae/, scheduler/; no gencodec files."""
    transformers = pytest.importorskip("transformers")
    repo = tmp_path / "sd"
    for sub in ("unet", "vae"):
        shutil.copytree(onestep_dir / sub, repo / sub)
    (repo / "scheduler").mkdir()
    (repo / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER))
    (repo / "tokenizer").mkdir()
    (repo / "tokenizer" / "vocab.json").write_text(json.dumps({t: i for i, t in
                                                               enumerate(VOCAB)}))
    (repo / "tokenizer" / "merges.txt").write_text("\n".join(MERGES) + "\n")
    cross = OneStepDiffusion.from_pretrained(onestep_dir).unet.config.cross_attention_dim
    torch.manual_seed(3)
    config = transformers.CLIPTextConfig(
        vocab_size=len(VOCAB), hidden_size=cross, intermediate_size=2 * cross,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=TOKENS,
        bos_token_id=0, eos_token_id=1, pad_token_id=1)
    transformers.CLIPTextModel(config).eval().save_pretrained(repo / "text_encoder")
    return repo


def _encoder_output(repo, ids):
    from transformers import CLIPTextModel

    enc = CLIPTextModel.from_pretrained(repo, subfolder="text_encoder").eval()
    with torch.no_grad():
        return enc(input_ids=torch.tensor([ids])).last_hidden_state


def _without_transformers(monkeypatch):
    """Make ``import transformers`` (and its submodules) fail from here on."""
    for name in [n for n in sys.modules if n == "transformers" or
                 n.startswith("transformers.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "transformers", None)


def test_static_embedding_in_place_then_runs_without_transformers(sd_repo, monkeypatch):
    from gencodec.filters.onestep import write_static_embedding

    assert write_static_embedding(sd_repo, sd_repo, "A photo") == sd_repo
    saved = load_file(str(sd_repo / EMBEDS_NAME))["prompt_embeds"]
    # <|startoftext|> a</w> ph oto</w> <|endoftext|>, padded with <|endoftext|> to L
    # tokens (the prompt lower-cased), as diffusers pipelines feed CLIP
    expect = _encoder_output(sd_repo, [0, 28, 54, 56, 1, 1, 1, 1])
    assert saved.shape == (1, TOKENS, 16) and saved.dtype == torch.float32
    torch.testing.assert_close(saved, expect, rtol=0, atol=1e-6)
    assert not torch.allclose(saved, _encoder_output(sd_repo, [0, 1, 1, 1, 1, 1, 1, 1]))
    cfg = json.loads((sd_repo / CONFIG_NAME).read_text())
    assert cfg["architecture"] == "onestep" and cfg["prompt"] == "A photo"
    assert (cfg["timestep"], cfg["prediction_type"]) == (999, "v_prediction")
    assert cfg["alpha_cumprod"] == pytest.approx(float(alphas_cumprod(SCHEDULER)[999]),
                                                 rel=1e-12)
    assert "base" not in cfg  # written into the repository itself

    _without_transformers(monkeypatch)
    with pytest.raises(ImportError):
        import transformers  # noqa: F401
    m = load_frame_model(sd_repo)
    assert isinstance(m, OneStepDiffusion)
    assert (m.timestep, m.prediction_type) == (999, "v_prediction")
    assert m.alpha_cumprod == pytest.approx(cfg["alpha_cumprod"])
    assert torch.equal(m.prompt_embeds, saved)
    with torch.no_grad():
        y = m(torch.rand(2, 3, 32, 40))
    assert y.shape == (2, 3, 32, 40) and torch.isfinite(y).all()
    assert 0.0 <= y.min() and y.max() <= 1.0 and y.std() > 0
    with pytest.raises(InputError, match="pip install transformers"):
        write_static_embedding(sd_repo, sd_repo, "A photo", force=True)


def test_static_embedding_in_its_own_directory(sd_repo, tmp_path, monkeypatch):
    """A new directory holds the two small files and names the repository as base."""
    from gencodec.filters.onestep import write_static_embedding

    out = tmp_path / "filter"
    write_static_embedding(str(sd_repo), out, "", timestep=249)
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_NAME, EMBEDS_NAME])
    cfg = json.loads((out / CONFIG_NAME).read_text())
    assert cfg["base"] == str(sd_repo.resolve()) and cfg["timestep"] == 249
    alpha = float(alphas_cumprod(SCHEDULER)[249])
    assert cfg["alpha_cumprod"] == pytest.approx(alpha, rel=1e-12)
    torch.testing.assert_close(load_file(str(out / EMBEDS_NAME))["prompt_embeds"],
                               _encoder_output(sd_repo, [0] + [1] * (TOKENS - 1)),
                               rtol=0, atol=1e-6)
    with pytest.raises(OutputExistsError):  # both files are there: --force to redo
        write_static_embedding(str(sd_repo), out, "a photo")
    assert json.loads((out / CONFIG_NAME).read_text())["prompt"] == ""
    write_static_embedding(str(sd_repo), out, "a photo", timestep=249, force=True)
    assert json.loads((out / CONFIG_NAME).read_text())["prompt"] == "a photo"

    _without_transformers(monkeypatch)
    m = load_frame_model(out)
    assert (m.timestep, m.alpha_cumprod) == (249, pytest.approx(alpha))
    with torch.no_grad():
        assert m(torch.rand(1, 3, 24, 24)).shape == (1, 3, 24, 24)


def test_static_embedding_errors(sd_repo, tmp_path):
    from gencodec.filters.onestep import write_static_embedding

    with pytest.raises(InputError, match="the scheduler has 1000 timesteps"):
        write_static_embedding(sd_repo, tmp_path / "a", timestep=1000)
    shutil.rmtree(sd_repo / "text_encoder")
    with pytest.raises(InputError, match="text_encoder"):
        write_static_embedding(sd_repo, tmp_path / "b")
    shutil.rmtree(sd_repo / "scheduler")
    with pytest.raises(InputError, match="scheduler_config.json"):
        write_static_embedding(sd_repo, tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abc")
