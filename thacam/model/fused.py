"""Faster, mathematically equal forms of THA3's per-frame networks (separable variant).

The trained networks (``networks.py``, bit-exact with the reference) stay as they are; these
wrappers share their weights and reorder the work:

* Output heads fused: the face morpher's five, the combiner's three and the editor's three 3x3
  heads read the same feature map, so they run as ONE convolution with the heads' filters
  stacked (then split), reading the 512x512 feature once instead of three times.
* Concatenations removed from the separable U-Net's upsampling blocks: a depthwise conv of
  cat(a, b) is cat(dw_a(a), dw_b(b)) and a pointwise conv of that concat is pw_a(.) + pw_b(.),
  so the 96x512x512 concat (100 MB of copying per frame) is never built.

Only the summation order changes, so the results equal the plain networks to float32 rounding
(tests check <= 1e-4). Must not import cv2 or mediapipe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .networks import (EyebrowMorphingCombiner, FaceMorpher, ResizeConvUNet, Editor, blend,
                       blend_rgb)

__all__ = ["FusedHeads", "FusedCombiner", "FusedFaceMorpher", "FusedEditor"]


class FusedHeads(nn.Module):
    """Several 3x3 heads on one feature map as one conv; returns the raw outputs in order.

    ``fuse=False`` keeps one conv per head (what exported graphs want: OpenVINO fuses each
    head's activation into its conv, and splitting one output costs more than it saves).
    """

    def __init__(self, convs: list[nn.Conv2d], fuse: bool = True):
        super().__init__()
        self.convs = None if fuse else nn.ModuleList(convs)
        self.splits = [c.out_channels for c in convs]
        if not fuse:
            return
        weight = torch.cat([c.weight.detach() for c in convs], 0)
        bias = torch.cat([c.bias.detach() if c.bias is not None
                          else torch.zeros(c.out_channels, dtype=weight.dtype,
                                           device=weight.device) for c in convs])
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: Tensor) -> list[Tensor]:
        if self.convs is not None:
            return [conv(x) for conv in self.convs]
        return list(torch.split(F.conv2d(x, self.weight, self.bias, padding=1), self.splits, 1))


def _head_conv(head: nn.Module) -> nn.Conv2d:
    return head[0] if isinstance(head, nn.Sequential) else head


class FusedCombiner(nn.Module):
    def __init__(self, net: EyebrowMorphingCombiner):
        super().__init__()
        self.net = net
        self.heads = FusedHeads([_head_conv(net.morphed_eyebrow_layer_grid_change),
                                 _head_conv(net.morphed_eyebrow_layer_alpha),
                                 _head_conv(net.morphed_eyebrow_layer_color_change)])

    def forward(self, background: Tensor, eyebrow: Tensor, pose: Tensor) -> Tensor:
        feature = self.net.body(torch.cat([background, eyebrow], dim=1), pose)
        grid, alpha, color = self.heads(feature)
        warped = self.net.warp(grid, eyebrow)
        morphed = blend(torch.sigmoid(alpha), torch.tanh(color), warped)
        return blend_rgb((morphed[:, 3:4] + 1.0) / 2.0, morphed, background)


class FusedFaceMorpher(nn.Module):
    def __init__(self, net: FaceMorpher):
        super().__init__()
        self.net = net
        self.heads = FusedHeads([_head_conv(h) for h in (
            net.iris_mouth_grid_change, net.iris_mouth_color_change, net.iris_mouth_alpha,
            net.eye_color_change, net.eye_alpha)])

    def forward(self, image: Tensor, pose: Tensor) -> Tensor:
        feature = self.net.features(image, pose)
        grid, im_color, im_alpha, eye_color, eye_alpha = self.heads(feature)
        warped = self.net.warp(grid, image)
        iris_mouth = blend(torch.sigmoid(im_alpha), torch.tanh(im_color), warped)
        return blend(torch.sigmoid(eye_alpha), torch.tanh(eye_color), iris_mouth)


def _split_conv_block(block: nn.Sequential, x: Tensor, skip: Tensor) -> Tensor:
    """A separable conv block [dw, pw, norm, act] applied to cat(x, skip) without the cat."""
    dw, pw, norm, act = block
    a = x.shape[1]
    wd, wp = dw.weight, pw.weight
    y = F.conv2d(x, wd[:a], None, dw.stride, dw.padding, groups=a)
    z = F.conv2d(skip, wd[a:], None, dw.stride, dw.padding, groups=skip.shape[1])
    out = F.conv2d(y, wp[:, :a], pw.bias) + F.conv2d(z, wp[:, a:])
    return act(norm(out))


class FusedEditor(nn.Module):
    def __init__(self, net: Editor, fuse_heads: bool = True):
        super().__init__()
        if not isinstance(net.body, ResizeConvUNet) or len(net.body.upsample_blocks[0]) != 4:
            raise ValueError("FusedEditor needs the separable editor")
        self.net = net
        self.heads = FusedHeads([_head_conv(net.color_change_creator),
                                 _head_conv(net.alpha_creator), net.grid_change_creator],
                                fuse_heads)

    def forward(self, original: Tensor, warped: Tensor, grid_change: Tensor,
                pose: Tensor) -> Tensor:
        body, s = self.net.body, self.net.size
        x = torch.cat([original, warped, grid_change, pose[:, :, None, None].expand(-1, -1, s, s)],
                      dim=1)
        skips = []
        for block in body.downsample_blocks:
            x = block(x)
            skips.append(x)
        for block in body.bottleneck_blocks:
            x = block(x)
        for i, block in enumerate(body.upsample_blocks):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = _split_conv_block(block, x, skips[-i - 2])
        color, alpha, grid = self.heads(x)
        grid = grid_change + grid
        return blend(torch.sigmoid(alpha), torch.tanh(color), self.net.warp(grid, original))
