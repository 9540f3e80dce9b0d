"""The control branch of OSDiff: a ControlNet-XS-style encoder (a copy of the UNet's
encoder and middle block at a fraction of its width, about 0.2) that reads
cat(y_t, y_c) and adds its features into the frozen diffusers UNet through
zero-initialised 1x1 convolutions: after every input block, after the middle block
and before every output block (the public model's ``CDDM``, paper Fig. 2).

The frozen UNet is a diffusers ``UNet2DConditionModel``; its blocks are walked here in
the order of the original LDM code (``conv_in``, then one "input block" per resnet
(+ attention) and per downsampler, the middle block, one "output block" per resnet
(+ attention, + upsampler)), which is the order the control features are injected in.
"""

from __future__ import annotations

import torch
from torch import nn


def find_denominator(number: int, start: int) -> int:
    """The largest divisor of ``number`` not above ``start``: the group counts of the
    GroupNorms here and in the discriminator's heads (as the public model) and the
    control branch's attention head sizes."""
    if start >= number:
        return number
    while number % start:
        start -= 1
    return start


def _attention_of(block, j: int):
    attns = getattr(block, "attentions", None)
    return attns[j] if attns is not None and len(attns) else None


def input_blocks(unet) -> list:
    """The UNet's encoder as LDM input blocks: conv_in, then (resnet, attention|None)
    pairs and downsamplers."""
    blocks = [unet.conv_in]
    for down in unet.down_blocks:
        for j, resnet in enumerate(down.resnets):
            blocks.append((resnet, _attention_of(down, j)))
        if down.downsamplers is not None:
            blocks.append(down.downsamplers[0])
    return blocks


def output_blocks(unet) -> list:
    """The UNet's decoder as LDM output blocks: (resnet, attention|None, upsampler|None)."""
    blocks = []
    for up in unet.up_blocks:
        last = len(up.resnets) - 1
        for j, resnet in enumerate(up.resnets):
            ups = up.upsamplers[0] if j == last and up.upsamplers is not None else None
            blocks.append((resnet, _attention_of(up, j), ups))
    return blocks


def run_block(block, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor):
    """Apply one input block (a convolution, a downsampler or (resnet, attention))."""
    if isinstance(block, tuple):
        resnet, attention = block
        h = resnet(h, temb)
        if attention is not None:
            h = attention(h, encoder_hidden_states=context, return_dict=False)[0]
        return h
    return block(h)


def _out_channels(block) -> int:
    if isinstance(block, tuple):
        return block[0].out_channels
    if isinstance(block, nn.Conv2d):
        return block.out_channels
    return block.out_channels if hasattr(block, "out_channels") else block.conv.out_channels


class ControlStage(nn.Module):
    """One control input block: a resnet (+ cross-attention transformer) or a
    strided 3x3 convolution (downsampler)."""

    def __init__(self, resnet=None, attention=None, downsample=None):
        super().__init__()
        self.resnet, self.attention, self.downsample = resnet, attention, downsample

    @property
    def out_channels(self) -> int:
        return self.downsample.out_channels if self.downsample is not None \
            else self.resnet.out_channels

    def forward(self, h, temb, context):
        if self.downsample is not None:
            return self.downsample(h)
        h = self.resnet(h, temb)
        if self.attention is not None:
            h = self.attention(h, encoder_hidden_states=context, return_dict=False)[0]
        return h


def _zero_conv(cin: int, cout: int) -> nn.Conv2d:
    c = nn.Conv2d(cin, cout, 1)
    nn.init.zeros_(c.weight)
    nn.init.zeros_(c.bias)
    return c


class ControlBranch(nn.Module):
    """The control encoder and its zero convolutions, built to match a UNet's shape."""

    def __init__(self, unet, hint_channels: int, ratio: float = 0.2, head_channels: int = 16,
                 control_scale: float = 1.0):
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding
        from diffusers.models.resnet import ResnetBlock2D
        from diffusers.models.transformers.transformer_2d import Transformer2DModel
        from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2DCrossAttn

        cfg = unet.config
        base = list(cfg.block_out_channels)
        width = int(base[0] * ratio)
        chans = [b // base[0] * width for b in base]
        temb_dim = unet.time_embedding.linear_2.out_features
        cross = cfg.cross_attention_dim

        def transformer(ch):
            hd = find_denominator(ch, head_channels)
            return Transformer2DModel(num_attention_heads=ch // hd, attention_head_dim=hd,
                                      in_channels=ch, norm_num_groups=find_denominator(ch, 32),
                                      cross_attention_dim=cross, use_linear_projection=True)

        def resnet(cin, cout):
            return ResnetBlock2D(in_channels=cin, out_channels=cout, temb_channels=temb_dim,
                                 groups=find_denominator(cin, 32),
                                 groups_out=find_denominator(cout, 32), eps=1e-5)

        self.time_embedding = TimestepEmbedding(base[0], temb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels + hint_channels, width, 3, padding=1)
        stages, ch = [], width
        for level, down in enumerate(unet.down_blocks):
            with_attention = _attention_of(down, 0) is not None
            for _ in down.resnets:
                stages.append(ControlStage(resnet(ch, chans[level]),
                                           transformer(chans[level]) if with_attention else None))
                ch = chans[level]
            if down.downsamplers is not None:
                stages.append(ControlStage(downsample=nn.Conv2d(ch, ch, 3, stride=2, padding=1)))
        self.stages = nn.ModuleList(stages)
        hd = find_denominator(ch, head_channels)
        self.mid_block = UNetMidBlock2DCrossAttn(
            in_channels=ch, temb_channels=temb_dim, resnet_eps=1e-5,
            resnet_groups=find_denominator(ch, 32), num_attention_heads=ch // hd,
            cross_attention_dim=cross, use_linear_projection=True)

        ctrl_out = [width] + [s.out_channels for s in self.stages]
        base_in = [_out_channels(b) for b in input_blocks(unet)]
        base_mid = unet.mid_block.resnets[-1].out_channels
        base_dec = [b[0].out_channels for b in output_blocks(unet)]
        self.enc_zero_convs = nn.ModuleList(_zero_conv(c, b) for c, b in zip(ctrl_out, base_in))
        self.mid_zero_conv = _zero_conv(ch, base_mid)
        dec_targets = [base_mid] + base_dec[:-1]
        self.dec_zero_convs = nn.ModuleList(
            _zero_conv(c, b) for c, b in zip(reversed(ctrl_out), dec_targets))
        n = len(self.enc_zero_convs) + 1 + len(self.dec_zero_convs)
        self.register_buffer("scale_list", torch.full((n,), float(control_scale)))

    def forward(self, unet, y_t: torch.Tensor, t: torch.Tensor, hint: torch.Tensor,
                context: torch.Tensor):
        """The UNet's output on y_t with the control features of cat(y_t, hint) added."""
        t_sin = unet.time_proj(t).to(y_t.dtype)
        temb_base, temb_ctrl = unet.time_embedding(t_sin), self.time_embedding(t_sin)
        scales = iter(self.scale_list)
        h_base, h_ctrl = y_t, self.conv_in(torch.cat([y_t, hint], 1))
        stages = [None] + list(self.stages)
        hs_base, hs_ctrl = [], []
        for k, block in enumerate(input_blocks(unet)):
            h_base = run_block(block, h_base, temb_base, context)
            if k:
                h_ctrl = stages[k](h_ctrl, temb_ctrl, context)
            h_base = h_base + self.enc_zero_convs[k](h_ctrl) * next(scales)
            hs_base.append(h_base)
            hs_ctrl.append(h_ctrl)
        h_base = unet.mid_block(h_base, temb_base, encoder_hidden_states=context)
        h_ctrl = self.mid_block(h_ctrl, temb_ctrl, encoder_hidden_states=context)
        h_base = h_base + self.mid_zero_conv(h_ctrl) * next(scales)
        for k, (resnet, attention, upsampler) in enumerate(output_blocks(unet)):
            h_base = h_base + self.dec_zero_convs[k](hs_ctrl.pop()) * next(scales)
            h_base = resnet(torch.cat([h_base, hs_base.pop()], 1), temb_base)
            if attention is not None:
                h_base = attention(h_base, encoder_hidden_states=context, return_dict=False)[0]
            if upsampler is not None:
                h_base = upsampler(h_base)
        h_base = unet.conv_act(unet.conv_norm_out(h_base)) if unet.conv_norm_out is not None \
            else h_base
        return unet.conv_out(h_base)


def unet_features(unet, y_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> list:
    """The plain UNet's input-block and middle-block features (no control)."""
    t_sin = unet.time_proj(t).to(y_t.dtype)
    temb = unet.time_embedding(t_sin)
    feats, h = [], y_t
    for block in input_blocks(unet):
        h = run_block(block, h, temb, context)
        feats.append(h)
    return feats + [unet.mid_block(h, temb, encoder_hidden_states=context)]
