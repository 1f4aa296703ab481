"""SSIM of two photos (numpy + Pillow), for the `images` benchmark.

Grayscale SSIM as defined by Wang, Bovik, Sheikh and Simoncelli (2004): both images are
converted to 8-bit luma (Pillow's "L", ITU-R 601-2), local statistics use an 11 x 11 Gaussian
window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, and the result is the mean of the SSIM map
over the positions where the window fits entirely (no padding). Images of different sizes are
compared after resizing the second to the first's size (Lanczos): renditions of the same width
may differ by a pixel in height between two pipelines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

SIGMA = 1.5
RADIUS = 5  # 11 taps
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _kernel() -> Any:
    x = np.arange(-RADIUS, RADIUS + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * SIGMA**2))
    return (k / k.sum()).astype(np.float32)


_KERNEL = _kernel()


def _blur(a: Any) -> Any:
    """Separable Gaussian filter over the 'valid' region (2 * RADIUS smaller each way), in
    float32 (SSIM comes out within 1e-6 of a float64 computation, four times faster)."""
    k = _KERNEL
    rows = a.shape[0] - 2 * RADIUS
    vertical = a[RADIUS : RADIUS + rows] * k[RADIUS]
    pair = np.empty_like(vertical)
    for i in range(RADIUS):  # the kernel is symmetric: add the two rows, multiply once
        np.add(a[i : i + rows], a[2 * RADIUS - i : 2 * RADIUS - i + rows], out=pair)
        pair *= k[i]
        vertical += pair
    cols = a.shape[1] - 2 * RADIUS
    out = vertical[:, RADIUS : RADIUS + cols] * k[RADIUS]
    pair = np.empty_like(out)
    for i in range(RADIUS):
        np.add(vertical[:, i : i + cols], vertical[:, 2 * RADIUS - i : 2 * RADIUS - i + cols],
               out=pair)  # fmt: skip
        pair *= k[i]
        out += pair
    return out


def ssim(a: Image.Image, b: Image.Image) -> float:
    """Mean SSIM of `a` and `b` (grayscale, Gaussian window); `b` is resized to `a`'s size."""
    if b.size != a.size:
        b = b.resize(a.size, Image.Resampling.LANCZOS)
    if min(a.size) <= 2 * RADIUS:
        raise ValueError(f"too small for an 11 x 11 window: {a.size}")
    x = np.asarray(a.convert("L"), np.float32)
    y = np.asarray(b.convert("L"), np.float32)
    mu_x, mu_y = _blur(x), _blur(y)
    xx, yy, xy = _blur(x * x), _blur(y * y), _blur(x * y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    num = (2 * mu_xy + C1) * (2 * (xy - mu_xy) + C2)
    den = (mu_xx + mu_yy + C1) * ((xx - mu_xx) + (yy - mu_yy) + C2)
    return float(np.mean(num / den, dtype=np.float64))


def ssim_files(pair: tuple[str, str]) -> float:
    """SSIM of two image files (first frame, as RGB); the second is resized to the first's
    size if they differ. One argument, so that it maps over a process pool."""
    with Image.open(pair[0]) as a, Image.open(pair[1]) as b:
        return ssim(a.convert("RGB"), b.convert("RGB"))
