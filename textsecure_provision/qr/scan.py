"""Read the provisioning link (§3) out of a picture of a QR code, with zxing-cpp (or zbar).

Choices, and why:

- **QR codes only** (``BarcodeFormat.QRCode``): the link is only ever a QR
  code, and a narrower search is faster and never mistakes a stray barcode on
  the desk for input.
- **Passes, cheapest first.** Most pictures decode on the first pass
  (grey-scale, no inverted search: ~5 ms for a 1000 × 1000 photo). If it finds
  nothing, later passes add the inverted search (a light-on-dark code, e.g.
  a terminal QR on a light theme without colour), then an unsharp-masked copy
  at half size (a blurred photo of a screen: sharpening restores the module
  edges that a plain threshold loses; halving first makes it 4× cheaper and
  works as well up to a blur of about a module), then a full-size copy
  sharpened with a wider radius (blur wider than a module). The first pass
  that finds anything wins; a picture without a code costs all four
  (~50 ms for 1000 × 1000).
  zxing-cpp's Python API has no ``try_harder`` flag; these passes are its
  equivalent, and they keep the common case fast (benchmarks/bench_qr.py).
- **Ambiguity is an error.** Several *different* texts in one picture raise
  ``QrError`` rather than picking one: a QR code from an untrusted source must
  never link silently (§8). Identical duplicates (two photos of the same
  screen in one shot) are one text.
- **EXIF orientation and transparency are applied** before decoding, so a
  phone photo or a transparent PNG is read as a person sees it.
- **Two decoders.** ``zxing`` (zxing-cpp, the default: a wheel with no system
  library, reads blurred photos zbar misses, ~10× faster here) and ``zbar``
  (pyzbar over the system's libzbar, the decoder the design card names:
  ``pip install 'textsecure-provision[zbar]'`` and libzbar0). Both run the
  same passes; zbar has no inverted search, so for it the image is inverted
  here. A missing pyzbar or libzbar is ``QrDecoderUnavailableError``, naming
  what to install.

Errors are subclasses of ``QrError``, one per case: ``NoSuchImageError``,
``UnreadableImageError``, ``NotAnImageError`` (also damaged, or far too large),
``NoQrCodeError``, ``SeveralQrCodesError``. A QR code that holds something
other than a provisioning link is ``LinkError`` (from ``protocol.link``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from textsecure_provision.errors import (
    InvalidInputError,
    NoQrCodeError,
    NoSuchImageError,
    NotAnImageError,
    QrDecoderUnavailableError,
    SeveralQrCodesError,
    UnreadableImageError,
)

if TYPE_CHECKING:
    from PIL.Image import Image

    from textsecure_provision.protocol.link import ProvisioningLink

MAX_IMAGE_BYTES = 64 * 1024 * 1024  # a phone photo is a few MB; refuse to slurp a disk image
_TOO_LARGE_HINT = "Give a smaller picture (a few megapixels is plenty)."
DECODERS = ("zxing", "zbar")
DEFAULT_DECODER = "zxing"
_SHARPEN_PERCENT = 200


def scan_link(path: str | os.PathLike[str], *, decoder: str = DEFAULT_DECODER) -> ProvisioningLink:
    """The provisioning link in the picture at ``path``.

    Raises ``QrError`` (see the module docstring) or ``LinkError`` when the
    one QR code found is not a provisioning link.
    """
    from textsecure_provision.protocol.link import parse_link

    return parse_link(scan_text(path, decoder=decoder))


def scan_text(path: str | os.PathLike[str], *, decoder: str = DEFAULT_DECODER) -> str:
    """The text of the one QR code in the picture at ``path``."""
    return _only_one(scan_texts(path, decoder=decoder))


def scan_texts(path: str | os.PathLike[str], *, decoder: str = DEFAULT_DECODER) -> list[str]:
    """The distinct texts of every QR code in the picture at ``path`` (at least one)."""
    read = reader(decoder)  # before opening the file: a missing decoder is the first thing said
    texts = _decode(open_image(path), read)[1]
    if not texts:
        raise NoQrCodeError(f"no QR code found in {_name(path)}")
    return texts


def open_image(path: str | os.PathLike[str]) -> Image:
    """Read and fully load the picture at ``path``; clear ``QrError``s for the usual mistakes."""
    name = _name(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_IMAGE_BYTES:
                raise NotAnImageError(
                    f"{name} is too large ({size} bytes) to be a picture of a QR code",
                    hint=_TOO_LARGE_HINT,
                )
            data = handle.read()
    except FileNotFoundError as exc:
        raise NoSuchImageError(f"no such file: {name}") from exc
    except OSError as exc:  # a folder, no permission, an I/O error
        raise UnreadableImageError(f"cannot read {name}: {exc.strerror or exc}") from exc
    return _open_bytes(data, name)


def decode_qr_bytes(data: bytes, *, decoder: str = DEFAULT_DECODER) -> list[str]:
    """``decode_qr_image`` for an encoded picture (PNG, JPEG, ...) held in memory."""
    read = reader(decoder)
    return _decode(_open_bytes(data, "the data"), read)[1]


def decode_qr_image(image: Image, *, decoder: str = DEFAULT_DECODER) -> list[str]:
    """The distinct texts of the QR codes in ``image``, in reading order; ``[]`` if none.

    Pure: no file, no state. Runs the passes of the module docstring and stops
    at the first that finds a code.
    """
    return decode_qr_image_verbose(image, decoder=decoder)[1]


def decode_qr_image_verbose(
    image: Image, *, decoder: str = DEFAULT_DECODER
) -> tuple[str | None, list[str]]:
    """``decode_qr_image``, also naming the pass (``PASSES``) that found the codes."""
    return _decode(image, reader(decoder))


def _decode(image: Image, read: Reader) -> tuple[str | None, list[str]]:
    try:
        grey = _to_grey(image)
    except (OSError, ValueError) as exc:  # an exotic mode Pillow cannot convert
        raise NotAnImageError(f"cannot read pixels in mode {image.mode}") from exc
    for name in PASSES:
        texts = _distinct(_PASS_FUNCTIONS[name](grey, read))
        if texts:
            return name, texts
    return None, []


def _open_bytes(data: bytes, name: str) -> Image:
    import io

    from PIL import Image as PilImage
    from PIL import UnidentifiedImageError

    try:
        return _load(PilImage.open(io.BytesIO(data)))
    except UnidentifiedImageError as exc:
        raise NotAnImageError(f"{name} is not an image") from exc
    except PilImage.DecompressionBombError as exc:
        raise NotAnImageError(
            f"{name} has too many pixels to be a picture of a QR code", hint=_TOO_LARGE_HINT
        ) from exc
    except Exception as exc:
        # Pillow knew the format but not the data (truncated or corrupt), and its
        # decoders raise many exception types for that: OSError, ValueError,
        # SyntaxError, EOFError, struct.error, ... All mean the same to the user.
        raise NotAnImageError(f"{name} is damaged or not a complete image") from exc


# -- the passes ------------------------------------------------------------------------------


def _sharpen(image: Image, radius_px: float) -> Image:
    from PIL import ImageFilter

    unsharp = ImageFilter.UnsharpMask(radius=radius_px, percent=_SHARPEN_PERCENT, threshold=0)
    return image.filter(unsharp)


def _halve(image: Image) -> Image:
    from PIL import Image as PilImage

    size = (max(1, image.width // 2), max(1, image.height // 2))
    return image.resize(size, PilImage.Resampling.BOX)


Reader = Callable[["Image", bool], list[str]]
"""One decoder run over a grey image: ``(image, try_invert) -> texts``."""

# Cheapest first; each later pass reads pictures the earlier ones miss (tests/unit/test_qr_scan.py).
_PASS_FUNCTIONS: dict[str, Callable[[Image, Reader], list[str]]] = {
    "plain": lambda img, read: read(img, False),
    "inverted": lambda img, read: read(img, True),
    "half-sharpened": lambda img, read: read(_sharpen(_halve(img), 2), True),
    "sharpened": lambda img, read: read(_sharpen(img, 6), True),
}
PASSES = tuple(_PASS_FUNCTIONS)


def reader(decoder: str) -> Reader:
    """The ``Reader`` of a decoder named in ``DECODERS``; loads it, or says what is missing."""
    if decoder == "zxing":
        return _read_zxing
    if decoder == "zbar":
        _load_zbar()
        return _read_zbar
    raise InvalidInputError(f"unknown QR decoder {decoder!r}; choose one of {', '.join(DECODERS)}")


def _read(image: Image, *, try_invert: bool) -> list[str]:
    """The default decoder's run (kept for tests and benchmarks)."""
    return _read_zxing(image, try_invert)


def _read_zxing(image: Image, try_invert: bool) -> list[str]:
    import zxingcpp

    found = zxingcpp.read_barcodes(
        image,
        formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode),
        try_rotate=False,  # only about 1-D codes at 90°; a QR finder is rotation-free
        try_downscale=True,
        try_invert=try_invert,
        text_mode=zxingcpp.TextMode.Plain,
    )
    return [barcode.text for barcode in found if barcode.valid]


def _load_zbar() -> Any:
    try:
        from pyzbar import pyzbar
    except ModuleNotFoundError as exc:
        raise QrDecoderUnavailableError(
            "the zbar decoder needs the pyzbar package, which is not installed",
            hint="Install it with: pip install 'textsecure-provision[zbar]' "
            "(and the zbar system library: apt install libzbar0, brew install zbar).",
        ) from exc
    except (ImportError, OSError) as exc:  # pyzbar is there, the shared library is not
        raise QrDecoderUnavailableError(
            "the zbar decoder needs the zbar system library (libzbar.so), which was not found",
            hint="Install it (Debian/Ubuntu: apt install libzbar0; macOS: brew install zbar), "
            "or leave --qr-decoder at its default (zxing).",
        ) from exc
    return pyzbar


def _read_zbar(image: Image, try_invert: bool) -> list[str]:
    pyzbar = _load_zbar()
    symbols = [pyzbar.ZBarSymbol.QRCODE]
    found = pyzbar.decode(image, symbols=symbols)
    if not found and try_invert:  # zbar has no inverted search: give it the negative
        from PIL import ImageOps

        found = pyzbar.decode(ImageOps.invert(image), symbols=symbols)
    return [symbol.data.decode("utf-8", errors="replace") for symbol in found]


def _load(image: Image) -> Image:
    # A JPEG can be decoded straight to grey-scale (luminance only): a third faster,
    # and grey is all the decoder uses. Other formats ignore the draft request.
    if image.format == "JPEG" and image.mode in ("RGB", "YCbCr", "L"):
        image.draft("L", image.size)
    image.load()
    return image


def _to_grey(image: Image) -> Image:
    from PIL import Image as PilImage
    from PIL import ImageOps

    # A broken EXIF block is ignored: the pixels are then read as stored.
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, SyntaxError):
        image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # A transparent background would turn black in grey-scale; put it on white.
        rgba = image.convert("RGBA")
        canvas = PilImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        image = canvas
    return image if image.mode == "L" else image.convert("L")


def _distinct(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _only_one(texts: list[str]) -> str:
    if len(texts) > 1:
        raise SeveralQrCodesError(f"the picture holds {len(texts)} different QR codes")
    return texts[0]


def _name(path: Any) -> str:
    return repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else repr(path)
