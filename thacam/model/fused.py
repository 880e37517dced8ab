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


class SplitConvBlock(nn.Module):
    """A separable conv block [dw, pw, norm, act] applied to cat(x, skip) without the cat.

    The weight halves are sliced once here (the pointwise halves are not contiguous views, and a
    per-frame slice would be copied before every convolution). ``tail`` is the block's norm and
    activation, kept as modules so that model/kernels.py can fuse them like any other.
    """

    def __init__(self, block: nn.Sequential):
        super().__init__()
        dw, pw, *tail = block
        skip = pw.out_channels  # the U-Net's skip has the block's own width
        a = dw.in_channels - skip
        self.dw_stride, self.dw_padding, self.a, self.skip = dw.stride, dw.padding, a, skip
        wd, wp = dw.weight.detach(), pw.weight.detach()
        for name, t in (("wd_x", wd[:a]), ("wd_skip", wd[a:]), ("wp_x", wp[:, :a]),
                        ("wp_skip", wp[:, a:])):
            self.register_buffer(name, t.contiguous(), persistent=False)
        self.pw_bias = pw.bias
        self.tail = nn.Sequential(*tail)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        y = F.conv2d(x, self.wd_x, None, self.dw_stride, self.dw_padding, groups=self.a)
        z = F.conv2d(skip, self.wd_skip, None, self.dw_stride, self.dw_padding, groups=self.skip)
        return self.tail(F.conv2d(y, self.wp_x, self.pw_bias) + F.conv2d(z, self.wp_skip))


class FusedEditor(nn.Module):
    def __init__(self, net: Editor, fuse_heads: bool = True):
        super().__init__()
        if not isinstance(net.body, ResizeConvUNet) or len(net.body.upsample_blocks[0]) != 4:
            raise ValueError("FusedEditor needs the separable editor")
        self.net = net
        self.up = nn.ModuleList(SplitConvBlock(b) for b in net.body.upsample_blocks)
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
        for i, block in enumerate(self.up):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(x, skips[-i - 2])
        color, alpha, grid = self.heads(x)
        grid = grid_change + grid
        return blend(torch.sigmoid(alpha), torch.tanh(color), self.net.warp(grid, original))
