"""``synthetic``: the built-in data set. Generated in code, no download,
deterministic, any resolution.

**This is not ImageNet.** It exists so that the smoke plan and the tests can train real models in
seconds on a CPU, and so that image-size effects are real: every image is *rendered* at the
requested resolution from a vector description (shape, pose, colours, stripe frequency), so a 128 px
image holds detail that a 32 px one cannot (the stripe and checker classes alias at low resolution),
instead of being an upsampled blur.

Ten classes: disk, square, triangle, ring, plus, star, horizontal stripes, vertical stripes,
checkerboard, diamond. ``difficulty`` in [0, 1] widens the pose range, lowers the contrast and adds
noise and a distractor blob. Sample ``i`` of a split depends only on ``(seed, split, i)``.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

__all__ = ["SyntheticShapes", "SYNTHETIC_CLASSES", "TRANSFER_CLASSES"]

SYNTHETIC_CLASSES = (
    "disk", "square", "triangle", "ring", "plus", "star", "h_stripes", "v_stripes", "checker",
    "diamond",
)
_SPLIT_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_029}
# The second built-in task (``synthetic_b``) for transfer learning: classes that a pretraining on
# the first six (``synthetic`` with num_classes=6) never sees.
TRANSFER_CLASSES = SYNTHETIC_CLASSES[6:]


def _shape_distance(kind: int, u: torch.Tensor, v: torch.Tensor,
                    freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed distance-like value (negative inside) of shape ``kind`` and a texture value
    (positive = ink).

    ``u, v`` are per-sample local coordinates (rotated and scaled), shape (n, H, W);
    ``freq`` (n, 1, 1).
    """
    r = torch.sqrt(u * u + v * v)
    ones = torch.ones_like(u)
    name = SYNTHETIC_CLASSES[kind]
    if name == "disk":
        return r - 0.9, ones
    if name == "square":
        return torch.maximum(u.abs(), v.abs()) - 0.8, ones
    if name == "triangle":
        edges = torch.stack([-v - 0.45, 0.866 * u + 0.5 * v - 0.45, -0.866 * u + 0.5 * v - 0.45])
        return edges.amax(0) * 1.4, ones
    if name == "ring":
        return (r - 0.7).abs() - 0.2, ones
    if name == "plus":
        arm1 = torch.maximum(u.abs() - 0.25, v.abs() - 0.9)
        arm2 = torch.maximum(u.abs() - 0.9, v.abs() - 0.25)
        return torch.minimum(arm1, arm2), ones
    if name == "star":
        angle = torch.atan2(v, u)
        return r - (0.62 + 0.3 * torch.cos(5 * angle)), ones
    if name == "diamond":
        return u.abs() + v.abs() - 1.05, ones
    square = torch.maximum(u.abs(), v.abs()) - 0.85
    if name == "h_stripes":
        return square, torch.sin(freq * math.pi * v)
    if name == "v_stripes":
        return square, torch.sin(freq * math.pi * u)
    if name == "checker":
        return square, torch.sin(freq * math.pi * u) * torch.sin(freq * math.pi * v)
    raise ValueError(f"unknown synthetic class {kind}")  # pragma: no cover


class SyntheticShapes(Dataset):
    """The built-in data set (called ``synthetic`` wherever a data set is named).

    Items are ``(uint8 image tensor 3xHxW, label)``; ``resolution`` is the rendering size (H = W).
    With ``cache=True`` the split is rendered once per resolution, vectorised, and indexed
    afterwards (a few seconds for 10k images at 64 px); :meth:`set_resolution` re-renders, which
    progressive learning uses.
    """

    def __init__(
        self,
        split: str = "train",
        num_samples: int | None = None,
        resolution: int = 64,
        difficulty: float = 0.3,
        seed: int = 0,
        num_classes: int = 10,
        transform=None,
        cache: bool = True,
        classes: tuple[str, ...] | None = None,
    ):
        if split not in _SPLIT_OFFSET:
            raise ValueError("synthetic split must be one of "
                             f"{', '.join(_SPLIT_OFFSET)}, got {split!r}")
        if classes is not None:
            unknown = [c for c in classes if c not in SYNTHETIC_CLASSES]
            if unknown or len(classes) < 2:
                raise ValueError("synthetic classes must be two or more of "
                                 f"{', '.join(SYNTHETIC_CLASSES)}; got {classes}")
            num_classes = len(classes)
        elif not 2 <= num_classes <= len(SYNTHETIC_CLASSES):
            raise ValueError(f"synthetic num_classes must be in 2..{len(SYNTHETIC_CLASSES)}, "
                             f"got {num_classes}")
        if not 0.0 <= difficulty <= 1.0:
            raise ValueError(f"synthetic difficulty must be in [0, 1], got {difficulty}")
        self.split = split
        self.num_samples = (num_samples if num_samples is not None
                            else (5000 if split == "train" else 1000))
        self.difficulty = difficulty
        self.seed = seed
        self.classes = (list(classes) if classes is not None
                        else list(SYNTHETIC_CLASSES[:num_classes]))
        self._kinds = [SYNTHETIC_CLASSES.index(c) for c in self.classes]  # label -> shape renderer
        self.transform = transform
        self.cache = cache
        self._params = self._sample_parameters()
        self.targets = self._params["label"].tolist()
        self._images: torch.Tensor | None = None
        self.resolution = resolution
        self.set_resolution(resolution)

    def _sample_parameters(self) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 7_919 + _SPLIT_OFFSET[self.split])
        n, d = self.num_samples, self.difficulty

        def uniform(low, high, *shape):
            return low + (high - low) * torch.rand(n, *shape, generator=g)

        label = torch.arange(n) % len(self.classes)
        label = label[torch.randperm(n, generator=g)]
        fg = uniform(0.0, 1.0, 3)
        bg = uniform(0.0, 1.0, 3)
        # Keep foreground and background apart: contrast shrinks as difficulty grows.
        min_contrast = 0.6 - 0.45 * d
        gap = (fg - bg).abs().amax(1, keepdim=True)
        push = torch.where(gap < min_contrast, (min_contrast - gap), torch.zeros_like(gap))
        fg = torch.where(fg > bg, (fg + push).clamp(0, 1), (fg - push).clamp(0, 1))
        return {
            "label": label,
            "cx": uniform(-0.15 - 0.3 * d, 0.15 + 0.3 * d),
            "cy": uniform(-0.15 - 0.3 * d, 0.15 + 0.3 * d),
            "scale": uniform(0.55 - 0.2 * d, 0.75),
            "angle": uniform(-math.pi / 9 * (0.5 + d), math.pi / 9 * (0.5 + d)),
            "freq": uniform(3.0, 5.0),
            "fg": fg,
            "bg": bg,
            "gradient": uniform(-0.2, 0.2, 2),
            "noise_seed": torch.randint(0, 2**31 - 1, (n,), generator=g),
            "blob": uniform(-0.8, 0.8, 3),  # distractor x, y and colour shift
        }

    def render(self, indices: torch.Tensor, resolution: int) -> torch.Tensor:
        """Render samples ``indices`` at ``resolution`` as uint8 (n, 3, H, W), vectorised per
        class."""
        p = {k: v[indices] for k, v in self._params.items()}
        n, d = len(indices), self.difficulty
        coords = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution * 2 - 1
        y, x = torch.meshgrid(coords, coords, indexing="ij")
        x, y = x.expand(n, -1, -1), y.expand(n, -1, -1)
        view = (n, 1, 1)
        cos, sin = torch.cos(p["angle"]).view(view), torch.sin(p["angle"]).view(view)
        dx, dy = x - p["cx"].view(view), y - p["cy"].view(view)
        scale = p["scale"].view(view)
        u = (cos * dx + sin * dy) / scale
        v = (-sin * dx + cos * dy) / scale
        pixel = 2.0 / resolution / scale  # one pixel in local units: sets the anti-aliasing width

        alpha = torch.empty(n, resolution, resolution)
        for label, kind in enumerate(self._kinds):
            mask = p["label"] == label
            if not mask.any():
                continue
            freq = p["freq"][mask].view(-1, 1, 1)
            dist, texture = _shape_distance(kind, u[mask], v[mask], freq)
            shape_alpha = torch.sigmoid(-dist / pixel[mask])
            texture_alpha = torch.sigmoid(texture / (freq * math.pi * pixel[mask]).clamp(min=1e-3))
            alpha[mask] = shape_alpha * texture_alpha

        ramp = 1 + p["gradient"][:, 0].view(view) * x + p["gradient"][:, 1].view(view) * y
        background = p["bg"].view(n, 3, 1, 1) * ramp.unsqueeze(1)
        image = (background * (1 - alpha.unsqueeze(1))
                 + p["fg"].view(n, 3, 1, 1) * alpha.unsqueeze(1))
        if d > 0:
            bx, by = p["blob"][:, 0].view(view), p["blob"][:, 1].view(view)
            blob = torch.exp(-((x - bx) ** 2 + (y - by) ** 2) / 0.02) * d
            image = image + (p["blob"][:, 2].view(n, 1, 1, 1) * blob.unsqueeze(1))
            noise = torch.empty_like(image)
            for i, s in enumerate(p["noise_seed"].tolist()):
                noise[i].normal_(0, 1, generator=torch.Generator().manual_seed(s))
            image = image + 0.12 * d * noise
        return (image.clamp(0, 1) * 255).round().to(torch.uint8)

    def set_resolution(self, resolution: int) -> None:
        """Render at a new size (cached splits are re-rendered in chunks)."""
        if resolution < 8:
            raise ValueError(f"synthetic resolution must be >= 8, got {resolution}")
        self.resolution = resolution
        if not self.cache:
            self._images = None
            return
        chunks = []
        for start in range(0, self.num_samples, 512):
            chunks.append(self.render(torch.arange(start, min(start + 512, self.num_samples)),
                                      resolution))
        self._images = torch.cat(chunks)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int):
        if self._images is not None:
            image = self._images[index]
        else:
            image = self.render(torch.tensor([index]), self.resolution)[0]
        label = self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, label
