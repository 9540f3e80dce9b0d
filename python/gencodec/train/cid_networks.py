"""The three CiD networks built from one diffusers backbone, and the student's output
folder.

* :class:`UNetDenoiser`: a diffusers ``UNet2DConditionModel`` with the static text
  embedding, seen as a denoiser ``f(z_t, t) -> z_0`` (the form the CiD losses use,
  :mod:`gencodec.train.cid_loss`). The teacher ``f_phi`` (frozen) and the fake score
  network ``f_psi`` are two of them, both starting from the teacher's weights (SiD).
* :class:`OneStepStudent`: ``G_theta(z_h) = f_theta(z_h, t_init)``: a copy of the
  teacher evaluated at the fixed timestep ``t_init`` with the input latent ``z_h`` in
  place of ``z_t`` (no noise added), exactly what the preprocessing filter
  (:class:`gencodec.filters.onestep.OneStepDiffusion`) computes between its VAE encoder
  and decoder. ``t_init`` defaults to SiD-LSG's 625 (``--init_timestep``).

:func:`load_teacher` reads the teacher the way the filter reads a model (a diffusers
repository with ``prompt_embeds.safetensors`` from
:func:`gencodec.filters.onestep.write_static_embedding`), plus its noise schedule;
:func:`save_student` writes a one-step model folder that ``gencodec preprocess
--model DIR`` loads.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from pathlib import Path

import torch

from gencodec.errors import InputError
from gencodec.train.cid_loss import signal_noise, x0_from_prediction


class UNetDenoiser(torch.nn.Module):
    """``f(z_t, t) = E[z_0 | z_t]`` from a UNet with a static text embedding."""

    def __init__(self, unet, prompt_embeds: torch.Tensor, alphas_cumprod: torch.Tensor,
                 prediction_type: str):
        super().__init__()
        self.unet, self.prediction_type = unet, prediction_type
        self.register_buffer("prompt_embeds", prompt_embeds.detach().float().clone())
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().to(torch.float64).clone())

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.prompt_embeds.expand(z_t.shape[0], -1, -1)
        out = self.unet(z_t, t.to(z_t.device), encoder_hidden_states=emb, return_dict=False)[0]
        a, s = signal_noise(self.alphas_cumprod, t.to(self.alphas_cumprod.device))
        return x0_from_prediction(out.float(), z_t.float(), a, s, self.prediction_type)


class OneStepStudent(torch.nn.Module):
    """``G_theta(z_h) = f_theta(z_h, t_init)``: a denoiser at a fixed timestep."""

    def __init__(self, denoiser: torch.nn.Module, t_init: int):
        super().__init__()
        self.denoiser, self.t_init = denoiser, int(t_init)

    def forward(self, z_h: torch.Tensor) -> torch.Tensor:
        t = torch.full((z_h.shape[0],), self.t_init, dtype=torch.long, device=z_h.device)
        return self.denoiser(z_h, t)


@dataclasses.dataclass
class Teacher:
    """What distillation needs from a teacher folder."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    prompt_embeds: torch.Tensor
    alphas_cumprod: torch.Tensor
    prediction_type: str
    scheduler_config: Path
    prompt: str | None


def load_teacher(spec: str | os.PathLike) -> Teacher:
    """A diffusers repository (directory or hub id) with ``unet/``, ``vae/``,
    ``scheduler/`` and a static embedding, as the filter loads it."""
    from gencodec.filters.model import CONFIG_NAME, read_config
    from gencodec.filters.onestep import OneStepDiffusion, _base, _read_json, alphas_cumprod, resolve

    root = resolve(spec)
    cfg = read_config(root) if (root / CONFIG_NAME).is_file() else {}
    sched_path = _base(root, cfg) / "scheduler" / "scheduler_config.json"
    sched = _read_json(sched_path)
    if sched is None:
        raise InputError(f"{spec}: no scheduler/scheduler_config.json: the teacher's noise "
                         "schedule is needed for distillation")
    ptype = sched.get("prediction_type", "epsilon")
    if ptype not in ("epsilon", "v_prediction"):
        raise InputError(f"{spec}: the teacher must predict epsilon or v (its scheduler says "
                         f"{ptype!r}); a one-step model is not a teacher")
    model = OneStepDiffusion.from_pretrained(spec, prediction_type=ptype)
    return Teacher(model.unet, model.vae, model.prompt_embeds, alphas_cumprod(sched), ptype,
                   sched_path, model.prompt)


def build_networks(teacher: Teacher, t_init: int) -> tuple[UNetDenoiser, UNetDenoiser, OneStepStudent]:
    """(teacher f_phi frozen, fake score f_psi, student G_theta), the last two copies of
    the teacher's UNet (SiD initialises both from the teacher)."""
    if not 0 <= t_init < len(teacher.alphas_cumprod):
        raise InputError(f"t_init {t_init}: the teacher has {len(teacher.alphas_cumprod)} "
                         "timesteps")
    args = (teacher.prompt_embeds, teacher.alphas_cumprod, teacher.prediction_type)
    fake = UNetDenoiser(copy.deepcopy(teacher.unet), *args).requires_grad_(True)
    student = OneStepStudent(UNetDenoiser(copy.deepcopy(teacher.unet), *args),
                             t_init).requires_grad_(True)
    real = UNetDenoiser(teacher.unet, *args).requires_grad_(False).eval()
    return real, fake, student


def save_student(student: OneStepStudent, teacher: Teacher, directory: str | os.PathLike) -> None:
    """Write ``directory`` as a one-step filter model (``gencodec preprocess --model``):
    the student's UNet, the teacher's VAE, the static embedding, ``t_init`` and the
    teacher's prediction type, plus the teacher's scheduler config (so that the
    filter's ``timestep`` override can recompute ``alpha_cumprod``)."""
    from gencodec.filters.onestep import OneStepDiffusion

    den = student.denoiser
    unet = copy.deepcopy(den.unet).float().cpu()
    unet.disable_gradient_checkpointing()
    model = OneStepDiffusion(unet, teacher.vae, den.prompt_embeds.cpu(),
                             timestep=student.t_init, prediction_type=den.prediction_type,
                             alpha_cumprod=float(den.alphas_cumprod[student.t_init]),
                             prompt=teacher.prompt)
    model.save_pretrained(directory)
    (Path(directory) / "scheduler").mkdir(exist_ok=True)
    shutil.copyfile(teacher.scheduler_config, Path(directory) / "scheduler" / "scheduler_config.json")
