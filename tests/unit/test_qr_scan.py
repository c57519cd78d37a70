"""Reading QR codes from pictures: round trips, photos of a screen, and every error path."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from qr_photos import photo_of_screen, qr_image  # tests/, on sys.path (tests/conftest.py)

from textsecure_provision.errors import (
    InvalidInputError,
    LinkError,
    NoQrCodeError,
    NoSuchImageError,
    NotAnImageError,
    QrDecoderUnavailableError,
    QrError,
    SeveralQrCodesError,
    UnreadableImageError,
)
from textsecure_provision.protocol.link import parse_link
from textsecure_provision.qr import scan
from textsecure_provision.qr.render import render_png
from textsecure_provision.qr.scan import (
    PASSES,
    decode_qr_bytes,
    decode_qr_image,
    decode_qr_image_verbose,
    scan_link,
    scan_text,
    scan_texts,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "device_init.json"
LINK: str = json.loads(VECTORS.read_text())["qr_link"]
OTHER_LINK = LINK.replace("0b7e7a3c", "1c8f8b4d")


def _zbar_missing() -> str | None:
    try:
        scan.reader("zbar")
    except QrDecoderUnavailableError as exc:
        return exc.message
    return None


ZBAR_MISSING = _zbar_missing()


@pytest.fixture(
    scope="module",
    params=[
        "zxing",
        pytest.param("zbar", marks=pytest.mark.skipif(ZBAR_MISSING is not None, reason=str(ZBAR_MISSING))),
    ]
)
def decoder(request: pytest.FixtureRequest) -> str:
    """Every decoding test runs on both backends (zbar where libzbar is installed, as in CI)."""
    return str(request.param)


def save(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def side_by_side(*images: Image.Image) -> Image.Image:
    width = sum(i.width for i in images) + 40 * (len(images) + 1)
    height = max(i.height for i in images) + 80
    canvas = Image.new("L", (width, height), 255)
    x = 40
    for image in images:
        canvas.paste(image, (x, 40))
        x += image.width + 40
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# -- happy paths -----------------------------------------------------------------------------


def test_png_round_trip_to_a_provisioning_link(tmp_path: Path, decoder: str) -> None:
    path = save(tmp_path, "code.png", render_png(LINK))
    assert scan_texts(path, decoder=decoder) == [LINK]
    assert scan_text(str(path), decoder=decoder) == LINK
    assert scan_link(path, decoder=decoder) == parse_link(LINK)


@pytest.mark.parametrize(
    ("angle", "seed"), [(10, 1), (-13, 2), (15, 3), (-17.5, 4), (20, 5)], ids=lambda v: str(v)
)
def test_photo_of_a_screen_decodes(tmp_path: Path, angle: float, seed: int, decoder: str) -> None:
    data = photo_of_screen(qr_image(LINK), angle=angle, seed=seed)
    picture = Image.open(io.BytesIO(data))
    assert (picture.format, picture.size) == ("JPEG", (1000, 1000))
    assert scan_link(save(tmp_path, "photo.jpg", data), decoder=decoder) == parse_link(LINK)


@pytest.mark.parametrize(
    ("blur", "fraction", "angle", "seed", "expected_pass", "zbar_pass"),
    [
        (2.0, 0.6, 12, 1, "plain", "half-sharpened"),  # the usual photo: the first, cheapest pass
        (3.0, 0.4, 14, 7, "half-sharpened", "half-sharpened"),  # blur about a module wide
        (6.0, 0.75, -12, 0, "sharpened", None),  # blur wider than a module: zbar misses it
    ],
)
def test_each_decoding_pass_earns_its_place(
    blur: float,
    fraction: float,
    angle: float,
    seed: int,
    expected_pass: str,
    zbar_pass: str | None,
    decoder: str,
) -> None:
    data = photo_of_screen(qr_image(LINK), angle=angle, blur=blur, fraction=fraction, seed=seed)
    found_by, texts = decode_qr_image_verbose(Image.open(io.BytesIO(data)), decoder=decoder)
    if decoder == "zbar":  # why zxing is the default (module docstring of qr/scan.py)
        assert (found_by, texts) == (zbar_pass, [LINK] if zbar_pass else [])
        return
    assert (found_by, texts) == (expected_pass, [LINK])
    assert found_by in PASSES


def test_light_on_dark_code_is_found_by_the_inverted_pass(decoder: str) -> None:
    inverted = Image.eval(qr_image(LINK), lambda v: 255 - v)
    assert decode_qr_image_verbose(inverted, decoder=decoder) == ("inverted", [LINK])
    assert decode_qr_image(inverted, decoder=decoder) == [LINK]


def test_transparent_png_is_read_on_white(tmp_path: Path, decoder: str) -> None:
    # Black modules on a transparent background: flattened naively to grey, the
    # background would be black too and nothing would be found.
    code = qr_image(LINK)
    rgba = Image.new("RGBA", code.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(code, lambda v: 255 - v))
    assert scan._read(rgba.convert("L"), try_invert=True) == []
    assert scan_text(save(tmp_path, "clear.png", png_bytes(rgba)), decoder=decoder) == LINK


def test_same_code_twice_is_one_text(tmp_path: Path, decoder: str) -> None:
    code = qr_image(LINK)
    path = save(tmp_path, "twice.png", png_bytes(side_by_side(code, code)))
    assert scan_texts(path, decoder=decoder) == [LINK]
    assert scan_text(path, decoder=decoder) == LINK


# -- error paths -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path, decoder: str) -> None:
    with pytest.raises(QrError, match="no such file") as excinfo:
        scan_link(tmp_path / "nope.png", decoder=decoder)
    assert type(excinfo.value) is NoSuchImageError
    assert excinfo.value.exit_code == 2
    assert "path" in excinfo.value.hint


def test_a_folder_is_unreadable(tmp_path: Path, decoder: str) -> None:
    with pytest.raises(QrError, match="cannot read") as excinfo:
        scan_text(tmp_path, decoder=decoder)
    assert type(excinfo.value) is UnreadableImageError


def test_text_file_named_png(tmp_path: Path, decoder: str) -> None:
    path = save(tmp_path, "notes.png", b"these are my notes, not a picture\n")
    with pytest.raises(QrError, match="not an image") as excinfo:
        scan_link(path, decoder=decoder)
    assert type(excinfo.value) is NotAnImageError


def test_truncated_png(tmp_path: Path, decoder: str) -> None:
    data = render_png(LINK)
    path = save(tmp_path, "cut.png", data[: len(data) // 2])
    with pytest.raises(QrError, match="damaged") as excinfo:
        scan_text(path, decoder=decoder)
    assert type(excinfo.value) is NotAnImageError


def test_file_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoder: str) -> None:
    path = save(tmp_path, "code.png", render_png(LINK))
    monkeypatch.setattr(scan, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(QrError, match="too large") as excinfo:
        scan_text(path, decoder=decoder)
    assert type(excinfo.value) is NotAnImageError


def test_image_without_a_qr_code(tmp_path: Path, decoder: str) -> None:
    noise = Image.frombytes("L", (400, 400), random.Random(0).randbytes(400 * 400))
    picture = side_by_side(noise, Image.linear_gradient("L"))
    with pytest.raises(QrError, match="no QR code") as excinfo:
        scan_link(save(tmp_path, "landscape.png", png_bytes(picture)), decoder=decoder)
    assert type(excinfo.value) is NoQrCodeError


def test_qr_code_that_is_not_a_provisioning_link(tmp_path: Path, decoder: str) -> None:
    path = save(tmp_path, "hello.png", render_png("hello"))
    assert scan_text(path, decoder=decoder) == "hello"
    with pytest.raises(LinkError, match="not a provisioning link") as excinfo:
        scan_link(path, decoder=decoder)
    assert excinfo.value.exit_code == 2


def test_two_different_codes_are_refused(tmp_path: Path, decoder: str) -> None:
    picture = side_by_side(qr_image(LINK), qr_image(OTHER_LINK))
    path = save(tmp_path, "two.png", png_bytes(picture))
    assert sorted(scan_texts(path, decoder=decoder)) == sorted([LINK, OTHER_LINK])
    with pytest.raises(QrError, match="2 different QR codes") as excinfo:
        scan_link(path, decoder=decoder)
    assert type(excinfo.value) is SeveralQrCodesError


def test_a_link_next_to_another_code_is_still_ambiguous(tmp_path: Path) -> None:
    # One valid link plus anything else is not "the" link: refuse, never pick (§8).
    picture = side_by_side(qr_image(LINK), qr_image("hello"))
    with pytest.raises(QrError) as excinfo:
        scan_link(save(tmp_path, "mixed.png", png_bytes(picture)))
    assert type(excinfo.value) is SeveralQrCodesError


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM"]),
    body=st.binary(max_size=300),
)
def test_garbage_bytes_raise_only_qr_error(prefix: bytes, body: bytes, decoder: str) -> None:
    try:
        texts = decode_qr_bytes(prefix + body, decoder=decoder)
    except QrError as exc:
        assert isinstance(exc, InvalidInputError)
        assert type(exc) is NotAnImageError
    else:
        assert texts == []


def test_damaged_photo_bytes_raise_only_qr_error(decoder: str) -> None:
    data = bytearray(photo_of_screen(qr_image(LINK), angle=12))
    rnd = random.Random(3)
    for _ in range(200):
        data[rnd.randrange(200, len(data))] = rnd.randrange(256)
    with pytest.raises(QrError) as excinfo:
        decode_qr_bytes(bytes(data[: len(data) * 2 // 3]), decoder=decoder)
    assert type(excinfo.value) is NotAnImageError


def test_unknown_decoder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown QR decoder 'zebra'"):
        scan_text(save(tmp_path, "code.png", render_png(LINK)), decoder="zebra")


def zbar_refusal(tmp_path: Path, missing: str) -> tuple[str, str, int]:
    """The error of ``scan_text(..., decoder='zbar')`` in a fresh interpreter where
    ``missing`` (a line of Python) has taken something away: message, hint, exit code."""
    path = save(tmp_path, "code.png", render_png(LINK))
    code = (
        "import ctypes.util, json, sys\n"
        f"{missing}\n"
        "from textsecure_provision.errors import QrDecoderUnavailableError\n"
        "from textsecure_provision.qr.scan import scan_text\n"
        "try:\n"
        f"    scan_text({str(path)!r}, decoder='zbar')\n"
        "except QrDecoderUnavailableError as exc:\n"
        "    print(json.dumps([exc.message, exc.hint, exc.exit_code]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    message, hint, exit_code = json.loads(out.stdout)
    return message, hint, exit_code


def test_zbar_without_its_system_library_names_it(tmp_path: Path) -> None:
    # libzbar is installed here, so its absence is simulated in a fresh interpreter: ctypes'
    # library search finds nothing (as on a machine without libzbar0). The only mock here.
    message, hint, exit_code = zbar_refusal(
        tmp_path, "ctypes.util.find_library = lambda name: None"
    )
    assert message == (
        "the zbar decoder needs the zbar system library (libzbar.so), which was not found"
    )
    assert "apt install libzbar0" in hint
    assert exit_code == 2


def test_zbar_without_pyzbar_names_the_extra(tmp_path: Path) -> None:
    message, hint, _ = zbar_refusal(tmp_path, "sys.modules['pyzbar'] = None  # not installed")
    assert "pyzbar package" in message
    assert "textsecure-provision[zbar]" in hint


def test_the_cli_offers_exactly_the_decoders_there_are() -> None:
    from textsecure_provision.cli.options import QR_DECODERS

    assert QR_DECODERS == scan.DECODERS
    assert QR_DECODERS[0] == scan.DEFAULT_DECODER
