"""Drawing QR codes: the terminal text is scannable, PNG/SVG files are valid and atomic."""

from __future__ import annotations

import io
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from textsecure_provision.errors import InvalidInputError
from textsecure_provision.qr import render
from textsecure_provision.qr.render import (
    ASCII_BLANK,
    ASCII_INK,
    FULL_BLOCK,
    LOWER_HALF,
    QUIET_ZONE_MODULES,
    TERMINAL_QUIET_ZONE_MODULES,
    UPPER_HALF,
    fit_terminal,
    needs_ascii,
    qr_matrix,
    render_png,
    render_svg,
    render_terminal,
    with_quiet_zone,
    write_qr_file,
)
from textsecure_provision.qr.scan import decode_qr_bytes, decode_qr_image

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "device_init.json"
LINK: str = json.loads(VECTORS.read_text())["qr_link"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# -- terminal text back to modules -----------------------------------------------------------


def modules_from_terminal(
    drawing: str, *, ascii_only: bool, invert: bool = False
) -> list[list[bool]]:
    """Re-read a terminal drawing as a module matrix (True = dark), as a camera would see it."""
    lines = [ANSI.sub("", line) for line in drawing.splitlines()]
    ink_rows: list[list[bool]] = []
    if ascii_only:
        for line in lines:
            assert len(line) % 2 == 0
            pairs = [line[i : i + 2] for i in range(0, len(line), 2)]
            assert set(pairs) <= {ASCII_INK, ASCII_BLANK}, f"unexpected characters in {line!r}"
            ink_rows.append([pair == ASCII_INK for pair in pairs])
    else:
        halves = {" ": (False, False), UPPER_HALF: (True, False), LOWER_HALF: (False, True)}
        halves[FULL_BLOCK] = (True, True)
        for line in lines:
            assert set(line) <= set(halves), f"unexpected characters in {line!r}"
            ink_rows.append([halves[c][0] for c in line])
            ink_rows.append([halves[c][1] for c in line])
    # Normally ink marks the light modules (module docstring); inverted, the dark ones.
    return [[ink if invert else not ink for ink in row] for row in ink_rows]


def rasterise(modules: list[list[bool]], px: int = 6) -> Image.Image:
    height, width = len(modules), len(modules[0])
    image = Image.new("L", (width, height), 255)
    image.putdata([0 if dark else 255 for row in modules for dark in row])
    return image.resize((width * px, height * px), Image.Resampling.NEAREST)


def read_without_inversion(image: Image.Image) -> list[str]:
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode, try_invert=False)
    return [b.text for b in found]


# -- the module matrix -----------------------------------------------------------------------


def test_matrix_uses_error_correction_m_and_fits_80_columns() -> None:
    matrix = qr_matrix(LINK)
    # Version 10 at M: 4 * 10 + 17 modules a side.
    assert len(matrix) == len(matrix[0]) == 57
    found = zxingcpp.read_barcodes(rasterise(with_quiet_zone(matrix)))
    assert [b.text for b in found] == [LINK]
    assert found[0].ec_level == "M"
    assert len(matrix) + 2 * QUIET_ZONE_MODULES <= 80


def test_quiet_zone_is_light_on_every_side() -> None:
    matrix = qr_matrix(LINK)
    framed = with_quiet_zone(matrix, 3)
    assert len(framed) == len(matrix) + 6
    assert all(len(row) == len(matrix) + 6 for row in framed)
    for row in (*framed[:3], *framed[-3:]):
        assert not any(row)
    for row in framed[3:-3]:
        assert not any(row[:3]) and not any(row[-3:])
    assert [row[3:-3] for row in framed[3:-3]] == matrix


def test_text_too_long_for_a_qr_code() -> None:
    with pytest.raises(InvalidInputError, match="too long"):
        qr_matrix("x" * 5000)


def test_text_must_be_str() -> None:
    with pytest.raises(TypeError):
        qr_matrix(LINK.encode())  # type: ignore[arg-type]


# -- terminal --------------------------------------------------------------------------------


@pytest.mark.parametrize("ascii_only", [False, True], ids=["half-blocks", "ascii"])
@pytest.mark.parametrize("colour", [False, True], ids=["plain", "colour"])
def test_terminal_drawing_is_exactly_the_code_and_scans(ascii_only: bool, colour: bool) -> None:
    drawing = render_terminal(LINK, ascii_only=ascii_only, colour=colour)
    modules = modules_from_terminal(drawing, ascii_only=ascii_only)
    expected = with_quiet_zone(qr_matrix(LINK), TERMINAL_QUIET_ZONE_MODULES)
    if not ascii_only:
        # Odd size: the last half row is one more light row of quiet zone.
        assert modules[-1] == [False] * len(expected)
        modules = modules[:-1]
    assert modules == expected
    # Dark-on-light without any inversion trick: the polarity every scanner reads.
    assert read_without_inversion(rasterise(modules)) == [LINK]


def test_half_blocks_size_and_characters() -> None:
    drawing = render_terminal(LINK)
    lines = drawing.splitlines()
    side = 57 + 2 * TERMINAL_QUIET_ZONE_MODULES
    assert drawing.endswith("\n")
    assert len(lines) == (side + 1) // 2
    assert {len(line) for line in lines} == {side}
    assert set(drawing) <= {" ", UPPER_HALF, LOWER_HALF, FULL_BLOCK, "\n"}
    # The light quiet zone is drawn, so the first text row is solid blocks.
    assert lines[0] == FULL_BLOCK * side


def test_ascii_drawing_is_pure_ascii_with_square_modules() -> None:
    drawing = render_terminal(LINK, ascii_only=True)
    drawing.encode("ascii")  # raises if anything else slipped in
    lines = drawing.splitlines()
    side = 57 + 2 * TERMINAL_QUIET_ZONE_MODULES
    assert len(lines) == side
    assert {len(line) for line in lines} == {2 * side}


def in_dark_terminal(modules: list[list[bool]], margin: int = 8) -> list[list[bool]]:
    """The drawing as it sits on a dark terminal: everything around it is dark."""
    width = len(modules[0]) + 2 * margin
    dark = [[True] * width for _ in range(margin)]
    return dark + [[True] * margin + row + [True] * margin for row in modules] + dark


@pytest.mark.parametrize("level", ["M", "L"])
def test_two_module_quiet_zone_scans_on_a_dark_background(level: str) -> None:
    drawing = render_terminal(LINK, error_level=level)  # type: ignore[arg-type]
    modules = modules_from_terminal(drawing, ascii_only=False)
    assert modules[0] == [False] * len(modules[0])  # the drawn margin is light
    assert read_without_inversion(rasterise(in_dark_terminal(modules))) == [LINK]


def test_fit_terminal_prefers_m_then_l_then_nothing() -> None:
    m = len(qr_matrix(LINK, error_level="M")) + 2 * TERMINAL_QUIET_ZONE_MODULES
    low = len(qr_matrix(LINK, error_level="L")) + 2 * TERMINAL_QUIET_ZONE_MODULES
    assert fit_terminal(LINK, 120, 50) == ("M", (m, (m + 1) // 2))
    assert fit_terminal(LINK, low, (low + 1) // 2) == ("L", (low, (low + 1) // 2))
    assert fit_terminal(LINK, 80, 24) == (None, (low, (low + 1) // 2))  # 80x24: too short
    assert fit_terminal(LINK, 200, 200, ascii_only=True)[0] == "M"
    assert fit_terminal(LINK, 120, 50, ascii_only=True) == (None, (2 * low, low))


def test_colour_wraps_every_line_and_resets() -> None:
    drawing = render_terminal(LINK, colour=True)
    for line in drawing.splitlines():
        assert line.startswith("\x1b[97;40m") and line.endswith("\x1b[0m")
    assert "\x1b" not in render_terminal(LINK, colour=False)


@pytest.mark.parametrize("ascii_only", [False, True], ids=["half-blocks", "ascii"])
def test_inverted_drawing_is_the_same_code_with_dark_modules_inked(ascii_only: bool) -> None:
    normal = render_terminal(LINK, ascii_only=ascii_only)
    inverted = render_terminal(LINK, ascii_only=ascii_only, invert=True)
    assert inverted != normal
    assert modules_from_terminal(inverted, ascii_only=ascii_only, invert=True) == (
        modules_from_terminal(normal, ascii_only=ascii_only)
    )
    # On a light theme without colour, the normal drawing shows light-on-dark:
    # our own scanner still reads it (it retries with inversion).
    as_seen = [[not m for m in row] for row in modules_from_terminal(normal, ascii_only=ascii_only)]
    assert read_without_inversion(rasterise(as_seen)) == []
    assert decode_qr_image(rasterise(as_seen)) == [LINK]


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8", False),
        ("UTF-16", False),
        ("cp437", False),  # old Windows consoles have the block characters
        ("ascii", True),
        ("latin-1", True),
        ("no-such-codec", True),
        (None, True),
        ("", True),
    ],
)
def test_needs_ascii(encoding: str | None, expected: bool) -> None:
    assert needs_ascii(encoding) is expected


# -- PNG and SVG -----------------------------------------------------------------------------


def test_png_round_trip() -> None:
    data = render_png(LINK)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    assert image.size == (650, 650)  # (57 + 8) modules of 10 px
    assert decode_qr_bytes(data) == [LINK]


def test_png_is_black_on_white_with_quiet_zone() -> None:
    image = Image.open(io.BytesIO(render_png(LINK))).convert("L")
    quiet = QUIET_ZONE_MODULES * 10
    assert image.getpixel((0, 0)) == 255
    assert image.crop((0, 0, image.width, quiet)).getextrema() == (255, 255)
    # The top-left finder pattern starts right after the quiet zone.
    assert image.getpixel((quiet, quiet)) == 0


def test_svg_is_well_formed_and_scales_to_a_readable_code() -> None:
    data = render_svg(LINK)
    root = ET.fromstring(data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == "0 0 65 65"
    rects = root.findall("{http://www.w3.org/2000/svg}rect")
    assert rects and rects[0].get("fill") == "white"  # visible in dark-mode viewers too
    (path,) = root.findall("{http://www.w3.org/2000/svg}path")
    # Re-draw the path's unit squares ("Mx,yH..V..H..z") and scan the result.
    squares = re.findall(r"M(\d+),(\d+)H\d+V\d+H\d+z", path.get("d", ""))
    assert squares
    modules = [[False] * 65 for _ in range(65)]
    for x, y in squares:
        modules[int(y)][int(x)] = True
    assert modules == with_quiet_zone(qr_matrix(LINK))
    assert read_without_inversion(rasterise(modules)) == [LINK]


@pytest.mark.parametrize("name", ["code.png", "code.PNG", "code.svg"])
def test_write_qr_file(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    written = write_qr_file(LINK, target)
    assert written == target
    data = target.read_bytes()
    if name.lower().endswith(".png"):
        assert decode_qr_bytes(data) == [LINK]
    else:
        ET.fromstring(data)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left


def test_write_qr_file_replaces_an_existing_file_and_honours_umask(tmp_path: Path) -> None:
    target = tmp_path / "code.png"
    target.write_bytes(b"old")
    old_umask = os.umask(0o027)
    try:
        write_qr_file(LINK, target)
    finally:
        os.umask(old_umask)
    assert decode_qr_bytes(target.read_bytes()) == [LINK]
    assert target.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("name", ["code.gif", "code", "code.png.txt"])
def test_write_qr_file_refuses_unknown_formats(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInputError, match="image format"):
        write_qr_file(LINK, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_write_qr_file_needs_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        write_qr_file(LINK, tmp_path / "missing" / "code.png")


def test_write_failure_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "code.png"
    target.write_bytes(b"old")

    def fail(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(render.os, "replace", fail)
    with pytest.raises(InvalidInputError, match="No space left"):
        write_qr_file(LINK, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["code.png"]
