"""TOPIQ-fr in plain PyTorch: CFANet (full-reference) on a ResNet-50 backbone.

Chen, Mo, Hou, Wu, Liao, Sun, Yan, Lin, "TOPIQ: A Top-down Approach from Semantics to
Distortions for Image Quality Assessment", IEEE TIP 2024 (arXiv:2308.03060), method
section: the coarse-to-fine attention network (CFANet) built from gated local pooling
(GLP), self-attention (SA) over each scale and cross-scale attention (CSA) from coarse to
fine. (The paper's text is not available offline, so no equation numbers are cited; the
reference for every operation is pyiqa's implementation, checked in the tests.)

This is the network of pyiqa's ``topiq_fr`` metric (``CFANet(semantic_model_name=
"resnet50", model_name="cfanet_fr_kadid_res50", use_ref=True)``, its inference path with
no test-time resizing, one crop), written without torchvision/timm/pyiqa. Module and
parameter names are those of pyiqa's CFANet, the backbone's those of timm's
``resnet50(features_only=True)``. pyiqa loads the published
``cfanet_fr_kadid_res50-2c4cc61d.pth`` as ``torch.load(f)["params"]`` with
``strict=True`` into a model that includes the backbone (``semantic_model.*``), so the
file holds every parameter here; it is loaded the same way. The score is the network's
raw output (``dist_to_mos`` is the identity for one class); higher = better quality.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# -- backbone: timm's resnet50 (torchvision "v1.5" layout), five feature taps ------------
class _Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50Features(nn.Module):
    """ResNet-50 returning the stem ReLU (stride 2, 64 channels) and the outputs of
    ``layer1``..``layer4`` (256, 512, 1024, 2048 channels), like timm's FeatureListNet."""

    channels = (64, 256, 512, 1024, 2048)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (blocks, width, stride) in enumerate(((3, 64, 1), (4, 128, 2),
                                                     (6, 256, 2), (3, 512, 2))):
            layer = []
            for b in range(blocks):
                layer.append(_Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        feats = [x]
        x = F.max_pool2d(x, 3, 2, 1)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


# -- attention blocks (pre-norm; dropout is inactive at inference) ----------------------
class _EncoderLayer(nn.Module):
    """Pre-norm transformer layer: ``x + MHA(LN x)``, then ``x + FFN(LN x)`` (SA)."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads)
        self.linear1, self.linear2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h)[0]
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class _DecoderLayer(nn.Module):
    """Cross-scale attention (CSA): the coarse tokens query the finer scale's tokens,
    ``q + MHA(LN q, LN kv, LN kv)``, then ``q + FFN(LN q)``. ``self_attn`` is unused
    upstream but is part of the checkpoint, so it is kept for strict loading."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads)
        self.multihead_attn = nn.MultiheadAttention(dim, heads)
        self.linear1, self.linear2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(dim) for _ in range(3))

    def forward(self, q, kv):
        kv = self.norm2(kv)
        q = q + self.multihead_attn(self.norm1(q), kv, kv)[0]
        return q + self.linear2(F.gelu(self.linear1(self.norm3(q))))


class _Stack(nn.Module):
    """``layers.0`` wrapper, kept for the checkpoint's key names (one layer each)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList([layer])

    def forward(self, *args):
        return self.layers[0](*args)


class TopiqFR(nn.Module):
    """CFANet, full-reference mode. ``forward(distorted, reference)`` with images in
    [0, 1], shape (N, 3, H, W); returns (N, 1) quality scores, higher = better."""

    def __init__(self, dim: int = 256, heads: int = 4):
        super().__init__()
        chans = ResNet50Features.channels
        ffn = min(4 * dim, 2048)
        self.semantic_model = ResNet50Features()
        # GLP (FR): a weight map from |f_dis - f_ref| gates [f_dis, f_ref, |diff|].
        self.weight_pool = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, 64, 1), nn.GELU(), nn.Conv2d(64, 64, 3, 1, 1),
                          nn.GELU(), nn.Conv2d(64, 1, 3, 1, 1), nn.Sigmoid()) for c in chans)
        self.dim_reduce = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3 * c, dim, 1), nn.GELU()) for c in chans)
        self.sa_attn_blks = nn.ModuleList(
            _Stack(_EncoderLayer(dim, heads, ffn)) for _ in chans)
        self.attn_blks = nn.ModuleList(
            _Stack(_DecoderLayer(dim, heads, ffn)) for _ in chans[1:])
        self.attn_pool = _EncoderLayer(dim, heads, ffn)
        self.score_linear = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(),
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))
        # learned 32x32 position embedding, split into a row and a column half
        self.h_emb = nn.Parameter(torch.zeros(1, dim // 2, 32, 1))
        self.w_emb = nn.Parameter(torch.zeros(1, dim // 2, 1, 32))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), False)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "TopiqFR":
        """Load pyiqa's checkpoint as pyiqa does: ``state["params"]``, a leading
        ``module.`` stripped from the keys, ``strict=True``."""
        state = torch.load(path, map_location="cpu", weights_only=True)["params"]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        net = cls()
        net.load_state_dict(state, strict=True)
        return net.eval().requires_grad_(False)

    def forward(self, distorted, reference):
        feats_d = self.semantic_model((distorted - self.mean) / self.std)
        feats_r = self.semantic_model((reference - self.mean) / self.std)
        _, _, th, tw = feats_d[-1].shape
        pos = torch.cat((self.h_emb.repeat(1, 1, 1, self.w_emb.shape[3]),
                         self.w_emb.repeat(1, 1, self.h_emb.shape[2], 1)), dim=1)
        tokens = []  # coarse (layer4) to fine (stem)
        for i in reversed(range(len(feats_d))):
            fd, fr = feats_d[i], feats_r[i]
            diff = torch.sqrt((fd - fr) ** 2 + 1e-12)
            feat = torch.cat([fd, fr, diff], dim=1) * self.weight_pool[i](diff)
            if feat.shape[2] > th and feat.shape[3] > tw:  # pool to the coarsest grid
                feat = F.adaptive_avg_pool2d(feat, (th, tw))
            p = F.interpolate(pos, size=feat.shape[2:], mode="bicubic", align_corners=False)
            feat = self.dim_reduce[i](feat).flatten(2).permute(2, 0, 1)  # (HW, N, C)
            tokens.append(self.sa_attn_blks[i](feat + p.flatten(2).permute(2, 0, 1)))
        query = tokens[0]
        for blk, kv in zip(self.attn_blks, tokens[1:]):
            query = blk(query, kv)
        return self.score_linear(self.attn_pool(query).mean(dim=0))
