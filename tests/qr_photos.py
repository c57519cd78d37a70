"""Pictures of QR codes as a phone takes them, for the QR tests and the B6 benchmark
(benchmarks/bench_qr.py): one simulation, so the benchmark decodes what the tests pin."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageChops, ImageFilter

from textsecure_provision.qr.render import render_png


def qr_image(text: str) -> Image.Image:
    return Image.open(io.BytesIO(render_png(text))).convert("L")


def photo_of_screen(
    code: Image.Image,
    *,
    angle: float,
    blur: float = 2.0,
    noise: float = 20.0,
    quality: int = 60,
    size: int = 1000,
    fraction: float = 0.6,
    seed: int = 0,
) -> bytes:
    """A JPEG like a phone's picture of a screen: rotated, blurred, low contrast, noisy."""
    side = int(size * fraction)
    canvas = Image.new("L", (size, size), 60)  # the screen's bezel / the desk around it
    canvas.paste(code.resize((side, side), Image.Resampling.NEAREST), ((size - side) // 2,) * 2)
    canvas = canvas.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=60)
    canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    # Lower contrast (a screen is not paper), then uniform noise of ± noise levels.
    canvas = canvas.point(lambda v: int(v * 0.8 + 30))
    grain = Image.frombytes("L", (size, size), random.Random(seed).randbytes(size * size))
    grain = grain.point(lambda v: int(128 - noise + v * 2 * noise / 255))
    picture = ImageChops.add(canvas, grain, scale=1.0, offset=-128).convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
