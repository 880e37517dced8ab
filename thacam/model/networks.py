"""The five THA3 networks, written plainly.

Talking Head(?) Anime from a Single Image 3 (Pramook Khungurn, 2022): a character image and a
45-float pose go through five encoder-decoder CNNs. This file defines them so that the official
state dicts load as they are (module names follow the official key names; ``load_state_dict``
is strict). The reference implementation is github.com/pkhungurn/talking-head-anime-3-demo; its
values (channel counts, image sizes, activations) are kept, its factory scaffolding is not.

Every network comes in two flavours: standard 3x3 convolutions, or "separable" ones (a depthwise
kxk followed by a pointwise 1x1), which is what the separable_* weight folders hold. The output
heads (alpha, colour change, grid change) are plain convolutions in both.

Building blocks, bottom-up:
    conv_block      conv -> InstanceNorm(affine) -> activation
    down_block      stride-2 4x4 conv -> norm -> act            (halves the size)
    up_block        stride-2 4x4 transposed conv -> norm -> act (doubles the size)
    ResnetBlock     x + (conv -> norm -> act -> conv -> norm)(x)
    PoserEncoderDecoder   (eyebrow nets, face morpher): pose tiled in at the bottleneck
    ResizeConvEncoderDecoder (rotator): nearest upsample + conv instead of transposed convs
    ResizeConvUNet  (editor): like the above, with skip connections
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "NetConfig", "EyebrowDecomposer", "EyebrowMorphingCombiner", "FaceMorpher",
    "FaceMorpherStandard", "TwoAlgoFaceBodyRotator", "Editor", "build_network", "NETWORK_CONFIGS",
]


# ------------------------------------------------------------------------------------- blocks

def _act(kind: str) -> nn.Module:
    # The eyebrow nets and face morpher use ReLU; the rotator and editor LeakyReLU(0.1).
    return nn.ReLU() if kind == "relu" else nn.LeakyReLU(0.1)


def _conv(cin: int, cout: int, k: int, separable: bool, stride: int = 1, padding: int | None = None,
          bias: bool = False) -> nn.Module:
    """A kxk convolution; separable = depthwise kxk then pointwise 1x1 (keys .0 and .1)."""
    padding = (k - 1) // 2 if padding is None else padding
    if not separable:
        return nn.Conv2d(cin, cout, k, stride, padding, bias=bias)
    return nn.Sequential(
        nn.Conv2d(cin, cin, k, stride, padding, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=bias),
    )


def _flat(*modules: nn.Module) -> nn.Sequential:
    """Sequential that splices the depthwise/pointwise pair in place, as the official keys expect
    (separable conv blocks are ``[dw, pw, norm, act]``, not ``[[dw, pw], norm, act]``)."""
    flat: list[nn.Module] = []
    for m in modules:
        flat.extend(m if isinstance(m, nn.Sequential) else [m])
    return nn.Sequential(*flat)


def conv_block(cin: int, cout: int, k: int, separable: bool, act: str) -> nn.Sequential:
    return _flat(_conv(cin, cout, k, separable), nn.InstanceNorm2d(cout, affine=True), _act(act))


def down_block(cin: int, cout: int, separable: bool, act: str) -> nn.Sequential:
    return _flat(_conv(cin, cout, 4, separable, stride=2, padding=1),
                 nn.InstanceNorm2d(cout, affine=True), _act(act))


def up_block(cin: int, cout: int, separable: bool, act: str) -> nn.Sequential:
    if separable:
        conv: nn.Module = nn.Sequential(
            nn.ConvTranspose2d(cin, cin, 4, 2, 1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False))
    else:
        conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
    return _flat(conv, nn.InstanceNorm2d(cout, affine=True), _act(act))


class ResnetBlock(nn.Module):
    def __init__(self, channels: int, separable: bool, act: str):
        super().__init__()
        # Separable convs stay nested here (keys resnet_path.0.0 / resnet_path.0.1).
        self.resnet_path = nn.Sequential(
            _conv(channels, channels, 3, separable), nn.InstanceNorm2d(channels, affine=True),
            _act(act),
            _conv(channels, channels, 3, separable), nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.resnet_path(x)


def alpha_head(cin: int, cout: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=True), nn.Sigmoid())


def color_head(cin: int, cout: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=True), nn.Tanh())


def grid_head(cin: int) -> nn.Conv2d:
    return nn.Conv2d(cin, 2, 3, 1, 1, bias=False)


# ------------------------------------------------------------------------------ image helpers

def blend(alpha: Tensor, change: Tensor, image: Tensor) -> Tensor:
    """alpha * change + (1 - alpha) * image: THA3's 'colour change'."""
    return change * alpha + image * (1 - alpha)


def blend_rgb(alpha: Tensor, change: Tensor, image: Tensor) -> Tensor:
    """Blend the RGB channels only; keep the image's alpha channel."""
    rgb = change[:, :3] * alpha + image[:, :3] * (1 - alpha)
    return torch.cat([rgb, image[:, 3:4]], dim=1)


class GridWarp(nn.Module):
    """Resample an image at (identity grid + predicted offsets), bilinear, border padding.

    The identity grid depends on the size only, so it is built once (a buffer that follows the
    module's device and dtype) instead of per frame with ``affine_grid``, which also keeps the
    graph exportable.
    """

    def __init__(self, size: int):
        super().__init__()
        theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
        base = F.affine_grid(theta, [1, 1, size, size], align_corners=False)  # (1, H, W, 2)
        self.register_buffer("base_grid", base, persistent=False)

    def forward(self, grid_change: Tensor, image: Tensor) -> Tensor:
        n, _, h, w = image.shape
        offset = grid_change.view(n, 2, h * w).transpose(1, 2).view(n, h, w, 2)
        grid = self.base_grid + offset  # (N, H, W, 2)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)


# ------------------------------------------------------------------------------------ configs

@dataclass(frozen=True)
class NetConfig:
    image_size: int
    in_channels: int          # image channels fed to the body (before any tiled pose)
    start_channels: int
    bottleneck_size: int
    num_pose_params: int
    separable: bool
    act: str                  # "relu" or "leaky"
    num_bottleneck_blocks: int = 6
    max_channels: int = 512

    def channels_at(self, size: int) -> int:
        return min(self.start_channels * (self.image_size // size), self.max_channels)

    @property
    def num_levels(self) -> int:
        return int(math.log2(self.image_size // self.bottleneck_size))


def _configs(separable: bool) -> dict[str, NetConfig]:
    # Values from THA3's load_* functions (poser/modes/{separable,standard}_float.py).
    return {
        "eyebrow_decomposer": NetConfig(128, 4, 64, 16, 0, separable, "relu"),
        "eyebrow_morphing_combiner": NetConfig(128, 8, 64, 16, 12, separable, "relu"),
        "face_morpher": NetConfig(192, 4, 64, 24, 27, separable, "relu"),
        # The rotator tiles its 6 pose values into the input at full resolution.
        "two_algo_face_body_rotator": NetConfig(256, 4 + 6, 64, 32, 6, separable, "leaky"),
        # The editor sees the original, the warped image (4 + 4), the grid change (2) and the pose.
        "editor": NetConfig(512, 4 + 4 + 2 + 6, 32, 64, 6, separable, "leaky"),
    }


NETWORK_CONFIGS = {"separable": _configs(True), "standard": _configs(False)}


# ------------------------------------------------------------------------------------- bodies

class PoserEncoderDecoder(nn.Module):
    """Encoder-decoder with the pose tiled in at the bottleneck; returns the full-size feature."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        sep, act = cfg.separable, cfg.act
        self.downsample_blocks = nn.ModuleList([conv_block(cfg.in_channels, cfg.start_channels, 3,
                                                           sep, act)])
        size, ch = cfg.image_size, cfg.start_channels
        while size > cfg.bottleneck_size:
            size //= 2
            self.downsample_blocks.append(down_block(ch, cfg.channels_at(size), sep, act))
            ch = cfg.channels_at(size)
        self.bottleneck_blocks = nn.ModuleList(
            [conv_block(ch + cfg.num_pose_params, ch, 3, sep, act)]
            + [ResnetBlock(ch, sep, act) for _ in range(cfg.num_bottleneck_blocks - 1)])
        self.upsample_blocks = nn.ModuleList()
        while size < cfg.image_size:
            size *= 2
            self.upsample_blocks.append(up_block(ch, cfg.channels_at(size), sep, act))
            ch = cfg.channels_at(size)

    def forward(self, image: Tensor, pose: Tensor | None = None) -> Tensor:
        x = image
        for block in self.downsample_blocks:
            x = block(x)
        if pose is not None:
            b = self.cfg.bottleneck_size
            x = torch.cat([x, pose[:, :, None, None].expand(-1, -1, b, b)], dim=1)
        for block in self.bottleneck_blocks:
            x = block(x)
        for block in self.upsample_blocks:
            x = block(x)
        return x  # (N, start_channels, image_size, image_size)


def _resize_conv_down_act(cfg: NetConfig) -> str:
    # A quirk of the trained standard (non-separable) rotator and editor: THA3 builds their
    # downsampling blocks without the block arguments, so they got the default ReLU, not the
    # LeakyReLU(0.1) used everywhere else in those networks. The separable ones did not.
    return cfg.act if cfg.separable else "relu"


class ResizeConvEncoderDecoder(nn.Module):
    """The rotator's body: 7x7 stem, stride-2 downsampling, resnet bottleneck, resize-conv up."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        sep, act = cfg.separable, cfg.act
        self.downsample_blocks = nn.ModuleList([conv_block(cfg.in_channels, cfg.start_channels, 7,
                                                           sep, act)])
        size, ch = cfg.image_size, cfg.start_channels
        while size > cfg.bottleneck_size:
            size //= 2
            self.downsample_blocks.append(down_block(ch, cfg.channels_at(size), sep,
                                                     _resize_conv_down_act(cfg)))
            ch = cfg.channels_at(size)
        self.bottleneck_blocks = nn.ModuleList(
            [ResnetBlock(ch, sep, act) for _ in range(cfg.num_bottleneck_blocks)])
        self.upsample_blocks = nn.ModuleList()
        while size < cfg.image_size:
            size *= 2
            self.upsample_blocks.append(nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                conv_block(ch, cfg.channels_at(size), 3, sep, act)))
            ch = cfg.channels_at(size)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.downsample_blocks:
            x = block(x)
        for block in self.bottleneck_blocks:
            x = block(x)
        for block in self.upsample_blocks:
            x = block(x)
        return x


class ResizeConvUNet(nn.Module):
    """The editor's body: a U-Net whose channels double per level (not a function of size)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        sep, act = cfg.separable, cfg.act
        self.downsample_blocks = nn.ModuleList([conv_block(cfg.in_channels, cfg.start_channels, 3,
                                                           sep, act)])
        size, ch = cfg.image_size, cfg.start_channels
        channels_at = {size: ch}
        while size > cfg.bottleneck_size:
            size //= 2
            nxt = min(cfg.max_channels, ch * 2)
            self.downsample_blocks.append(down_block(ch, nxt, sep, _resize_conv_down_act(cfg)))
            ch = channels_at[size] = nxt
        self.bottleneck_blocks = nn.ModuleList(
            [ResnetBlock(ch, sep, act) for _ in range(cfg.num_bottleneck_blocks)])
        self.upsample_blocks = nn.ModuleList()
        while size < cfg.image_size:
            size *= 2
            self.upsample_blocks.append(conv_block(ch + channels_at[size], channels_at[size], 3,
                                                   sep, act))
            ch = channels_at[size]

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.downsample_blocks:
            x = block(x)
            skips.append(x)
        for block in self.bottleneck_blocks:
            x = block(x)
        for i, block in enumerate(self.upsample_blocks):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(torch.cat([x, skips[-i - 2]], dim=1))
        return x


# ----------------------------------------------------------------------------------- networks

class EyebrowDecomposer(nn.Module):
    """128x128 face crop -> an eyebrow layer and the background behind it (once per character)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.body = PoserEncoderDecoder(cfg)
        c = cfg.start_channels
        self.background_layer_alpha = alpha_head(c)
        self.background_layer_color_change = color_head(c)
        self.eyebrow_layer_alpha = alpha_head(c)
        self.eyebrow_layer_color_change = color_head(c)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        feature = self.body(image)
        background = blend(self.background_layer_alpha(feature),
                           self.background_layer_color_change(feature), image)
        # Note the argument order: the eyebrow layer keeps the image where alpha is high.
        eyebrow = blend(self.eyebrow_layer_alpha(feature), image,
                        self.eyebrow_layer_color_change(feature))
        return {"eyebrow_layer": eyebrow, "background_layer": background}


class EyebrowMorphingCombiner(nn.Module):
    """Warp and recolour the eyebrow layer by pose[0:12], then lay it over the background."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.body = PoserEncoderDecoder(cfg)
        c = cfg.start_channels
        self.morphed_eyebrow_layer_grid_change = grid_head(c)
        self.morphed_eyebrow_layer_alpha = alpha_head(c)
        self.morphed_eyebrow_layer_color_change = color_head(c)
        self.combine_alpha = alpha_head(c)  # trained, but the poser uses the layer's own alpha
        self.warp = GridWarp(cfg.image_size)

    def forward(self, background: Tensor, eyebrow: Tensor, pose: Tensor) -> Tensor:
        feature = self.body(torch.cat([background, eyebrow], dim=1), pose)
        warped = self.warp(self.morphed_eyebrow_layer_grid_change(feature), eyebrow)
        morphed = blend(self.morphed_eyebrow_layer_alpha(feature),
                        self.morphed_eyebrow_layer_color_change(feature), warped)
        # THA3's posers composite with the morphed layer's own alpha ("no combine alpha").
        return blend_rgb((morphed[:, 3:4] + 1.0) / 2.0, morphed, background)  # (N, 4, 128, 128)


class FaceMorpher(nn.Module):
    """192x192 face crop + pose[12:39] -> the face with eyes, iris and mouth changed."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.body = PoserEncoderDecoder(cfg)
        self._init_heads(cfg)

    def _init_heads(self, cfg: NetConfig) -> None:
        c = cfg.start_channels
        self.iris_mouth_grid_change = grid_head(c)
        self.iris_mouth_color_change = color_head(c)
        self.iris_mouth_alpha = alpha_head(c)
        self.eye_color_change = color_head(c)
        self.eye_alpha = alpha_head(c)
        self.warp = GridWarp(cfg.image_size)

    def features(self, image: Tensor, pose: Tensor) -> Tensor:
        return self.body(image, pose)

    def forward(self, image: Tensor, pose: Tensor) -> Tensor:
        feature = self.features(image, pose)
        warped = self.warp(self.iris_mouth_grid_change(feature), image)
        iris_mouth = blend(self.iris_mouth_alpha(feature), self.iris_mouth_color_change(feature),
                           warped)
        return blend(self.eye_alpha(feature), self.eye_color_change(feature), iris_mouth)


class FaceMorpherStandard(FaceMorpher):
    """The standard-conv face morpher (THA3's FaceMorpher08): same maths, but its encoder-decoder
    blocks sit at the top level of the state dict instead of under ``body.``."""

    def __init__(self, cfg: NetConfig):
        nn.Module.__init__(self)
        body = PoserEncoderDecoder(cfg)
        self.cfg = cfg
        self.downsample_blocks = body.downsample_blocks
        self.bottleneck_blocks = body.bottleneck_blocks
        self.upsample_blocks = body.upsample_blocks
        self._init_heads(cfg)

    def features(self, image: Tensor, pose: Tensor) -> Tensor:
        return PoserEncoderDecoder.forward(self, image, pose)  # type: ignore[arg-type]


class TwoAlgoFaceBodyRotator(nn.Module):
    """Half-size image + pose[39:45] -> a directly generated image and a warped one (2 algos)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.encoder_decoder = ResizeConvEncoderDecoder(cfg)
        c = cfg.start_channels
        self.direct_creator = color_head(c)  # unused by the poser, kept so the weights load
        self.grid_change_creator = grid_head(c)
        self.warp = GridWarp(cfg.image_size)
        self.size = cfg.image_size

    def forward(self, image: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        s = self.size
        feature = self.encoder_decoder(
            torch.cat([image, pose[:, :, None, None].expand(-1, -1, s, s)], dim=1))
        grid_change = self.grid_change_creator(feature)          # (N, 2, 256, 256)
        return self.warp(grid_change, image), grid_change


class Editor(nn.Module):
    """Full-size face-morphed image + the rotator's (upscaled) warp -> the final posed image."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.body = ResizeConvUNet(cfg)
        c = cfg.start_channels
        self.color_change_creator = color_head(c)
        self.alpha_creator = alpha_head(c, 4)
        self.grid_change_creator = grid_head(c)
        self.warp = GridWarp(cfg.image_size)
        self.size = cfg.image_size

    def forward(self, original: Tensor, warped: Tensor, grid_change: Tensor,
                pose: Tensor) -> Tensor:
        s = self.size
        feature = self.body(torch.cat(
            [original, warped, grid_change, pose[:, :, None, None].expand(-1, -1, s, s)], dim=1))
        grid = grid_change + self.grid_change_creator(feature)
        return blend(self.alpha_creator(feature), self.color_change_creator(feature),
                     self.warp(grid, original))  # (N, 4, 512, 512)


def build_network(name: str, variant: str = "separable") -> nn.Module:
    """An untrained network by its official file stem and variant family."""
    cfg = NETWORK_CONFIGS[variant][name]
    cls = {
        "eyebrow_decomposer": EyebrowDecomposer,
        "eyebrow_morphing_combiner": EyebrowMorphingCombiner,
        "face_morpher": FaceMorpher if variant == "separable" else FaceMorpherStandard,
        "two_algo_face_body_rotator": TwoAlgoFaceBodyRotator,
        "editor": Editor,
    }[name]
    return cls(cfg)
