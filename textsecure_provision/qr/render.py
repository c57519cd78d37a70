"""Draw a provisioning link (§3) as a QR code: terminal text, PNG or SVG.

Choices, and why:

- **Error correction M.** The ~180-character link needs version 9 (53
  modules a side) at M, version 8 (49) at L (a long server name adds a
  version). Measured with ``qr.scan`` on
  simulated phone photos of a screen (1000 px JPEG q60, rotated 10-20°,
  noise; 12 seeds each): L's larger modules survive more blur when the code is
  small in the frame (blur σ 3 px at 35 % of the frame: L 12/12, M 0/12), but
  M survives a glare spot half as wide again (radius 100 px on a 600 px code:
  M 12/12, L 0/12). Blur is fixed by moving the phone closer or letting it
  focus; a reflection on a glossy screen or a thumb over a corner is the
  failure users cannot see, so M where it fits (in a terminal: 53 + 2 × 2 = 57
  columns by 29 rows).
- **Quiet zone of 4 modules** (the standard's minimum) in files: scanners
  find the code faster. **In a terminal, 2 modules**, always drawn as light
  blocks: what lies around them (the terminal's background, dark on the
  usual theme and with colour) is as dark as the modules, so the drawn
  margin is the whole light border a scanner sees; 2 modules is what the
  Micro QR standard asks for and what zxing and phone scanners need (a test
  decodes a screen capture). Every column saved lets it fit more terminals.
- **In a terminal, the largest error correction that fits** (``fit_terminal``):
  M when the window has room, L (version 8, 49 modules) when only that fits.
  Neither fits 80x24 (L needs 53 columns by 27 rows): the CLI then says so and
  shows the bare link, and redraws when the window grows.
- **Terminal: light modules are drawn, dark modules are blank.** A terminal
  draws glyphs in its foreground colour on its background; on the usual dark
  theme, drawing the *light* modules (and the quiet zone) as blocks gives a
  dark-on-light code, the polarity every scanner reads. When colour is allowed
  (a terminal, no ``NO_COLOR``) each line is also wrapped in explicit "bright
  white on black" SGR codes, which makes the result dark-on-light on *any*
  theme. Without colour on a light theme the code comes out inverted
  (light-on-dark): zxing (so ``provision qr decode``) and many phone
  scanners read that too, and
  ``invert=True`` (``provision qr encode --invert``) draws the dark modules
  instead for scanners that do not.
- **Unicode half blocks** (``▀ ▄ █`` and space) put two module rows in one
  text row, so a module is about square in a 1:2 terminal cell. The ASCII
  fallback draws one module as two characters (``##`` or two spaces), one
  module row per text row, so it is about 114 columns wide: for logs, wide windows
  and terminals without those glyphs; it is chosen explicitly or when the
  output stream cannot encode the block characters (``needs_ascii``).

Everything here is pure (text in, ``str``/``bytes`` out) except
``write_qr_file``, which writes atomically (``atomic_write.py``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from textsecure_provision.atomic_write import atomic_write
from textsecure_provision.errors import InvalidInputError

Matrix = list[list[bool]]  # True = a dark module
ErrorLevel = Literal["L", "M", "Q", "H"]
ImageFormat = Literal["png", "svg"]

ERROR_LEVEL: ErrorLevel = "M"
QUIET_ZONE_MODULES = 4
TERMINAL_QUIET_ZONE_MODULES = 2
TERMINAL_LEVELS: tuple[ErrorLevel, ...] = ("M", "L")  # most robust first
PNG_BOX_PX = 10  # pixels per module in a PNG: a 57-module code becomes 650 × 650 px

UPPER_HALF, LOWER_HALF, FULL_BLOCK = "\u2580", "\u2584", "\u2588"  # ▀ ▄ █
ASCII_INK = "##"
ASCII_BLANK = "  "
_HALF_BLOCKS = {
    (False, False): " ",
    (True, False): UPPER_HALF,
    (False, True): LOWER_HALF,
    (True, True): FULL_BLOCK,
}
# Bright white glyphs on a black background, reset at the end of each line so
# the background never bleeds into the next line or the shell prompt.
_SGR_START = "\x1b[97;40m"
_SGR_RESET = "\x1b[0m"


def qr_matrix(text: str, *, error_level: ErrorLevel = ERROR_LEVEL) -> Matrix:
    """The QR code's modules, without any quiet zone; ``True`` is dark."""
    code = _make_code(text, error_level, border=0)
    return [[bool(cell) for cell in row] for row in code.get_matrix()]


def _make_code(text: str, error_level: ErrorLevel, **options: Any) -> Any:
    """A fitted ``qrcode.QRCode`` holding ``text`` as UTF-8 bytes (byte mode)."""
    import qrcode
    from qrcode.exceptions import DataOverflowError

    if not isinstance(text, str):
        raise TypeError("text must be str")
    levels = {
        "L": qrcode.constants.ERROR_CORRECT_L,
        "M": qrcode.constants.ERROR_CORRECT_M,
        "Q": qrcode.constants.ERROR_CORRECT_Q,
        "H": qrcode.constants.ERROR_CORRECT_H,
    }
    code = qrcode.QRCode(error_correction=levels[error_level], **options)
    code.add_data(text.encode("utf-8"))
    try:
        code.make(fit=True)
    except (DataOverflowError, ValueError) as exc:  # qrcode 8 says "Invalid version (41)"
        raise InvalidInputError("the text is too long for a QR code") from exc
    return code


def with_quiet_zone(matrix: Sequence[Sequence[bool]], border: int = QUIET_ZONE_MODULES) -> Matrix:
    """``matrix`` surrounded by ``border`` light modules on every side."""
    width = len(matrix[0]) + 2 * border if matrix else 2 * border
    blank = [False] * width
    rows = [list(blank) for _ in range(border)]
    rows += [[False] * border + [bool(c) for c in row] + [False] * border for row in matrix]
    rows += [list(blank) for _ in range(border)]
    return rows


def needs_ascii(encoding: str | None) -> bool:
    """True when a stream with this encoding cannot carry the half-block characters."""
    if not encoding:
        return True
    try:
        (UPPER_HALF + LOWER_HALF + FULL_BLOCK).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return True
    return False


def render_terminal(
    text: str,
    *,
    ascii_only: bool = False,
    colour: bool = False,
    invert: bool = False,
    border: int = TERMINAL_QUIET_ZONE_MODULES,
    error_level: ErrorLevel = ERROR_LEVEL,
) -> str:
    """Draw ``text`` as a QR code for a terminal; lines end with ``\\n``.

    ``colour`` adds explicit SGR colours (only when the caller has checked the
    stream is a terminal and ``NO_COLOR`` is unset); ``invert`` draws the dark
    modules instead of the light ones, for light themes without colour.
    """
    matrix = with_quiet_zone(qr_matrix(text, error_level=error_level), border)
    if not ascii_only and len(matrix) % 2:
        # Half blocks take module rows in pairs and QR sizes are odd: one more
        # light row just widens the bottom quiet zone by half a text row.
        matrix.append([False] * len(matrix[0]))
    ink = _ink_matrix(matrix, invert)
    lines = _draw_ascii(ink) if ascii_only else _draw_half_blocks(ink)
    if colour:
        lines = [f"{_SGR_START}{line}{_SGR_RESET}" for line in lines]
    return "".join(line + "\n" for line in lines)


def terminal_size_of(
    text: str,
    *,
    ascii_only: bool = False,
    error_level: ErrorLevel = ERROR_LEVEL,
    border: int = TERMINAL_QUIET_ZONE_MODULES,
) -> tuple[int, int]:
    """(columns, rows) that ``render_terminal`` needs for ``text``."""
    modules = len(qr_matrix(text, error_level=error_level)) + 2 * border
    if ascii_only:
        return 2 * modules, modules
    return modules, (modules + 1) // 2


def fit_terminal(
    text: str, columns: int, rows: int, *, ascii_only: bool = False
) -> tuple[ErrorLevel | None, tuple[int, int]]:
    """The most robust error level whose drawing fits ``columns`` x ``rows``.

    Returns ``(level, size)``, or ``(None, smallest size)`` when nothing fits.
    """
    size = (0, 0)
    for level in TERMINAL_LEVELS:
        size = terminal_size_of(text, ascii_only=ascii_only, error_level=level)
        if size[0] <= columns and size[1] <= rows:
            return level, size
    return None, size


def _ink_matrix(matrix: Matrix, invert: bool) -> Matrix:
    # "Ink" is what gets a glyph. Normally the light modules (see the module
    # docstring); inverted, the dark ones.
    return [[cell if invert else not cell for cell in row] for row in matrix]


def _draw_half_blocks(ink: Matrix) -> list[str]:
    rows = ink
    return [
        "".join(_HALF_BLOCKS[(top, bottom)] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[0::2], rows[1::2], strict=True)
    ]


def _draw_ascii(ink: Matrix) -> list[str]:
    return ["".join(ASCII_INK if cell else ASCII_BLANK for cell in row) for row in ink]


def render_png(
    text: str,
    *,
    box_px: int = PNG_BOX_PX,
    border: int = QUIET_ZONE_MODULES,
    error_level: ErrorLevel = ERROR_LEVEL,
) -> bytes:
    """A black-on-white, 1-bit PNG of the QR code."""
    from PIL import Image

    matrix = with_quiet_zone(qr_matrix(text, error_level=error_level), border)
    size = len(matrix)
    # One pixel per module, then a nearest-neighbour scale: sharp edges, tiny file.
    image = Image.new("1", (size, size), 1)
    image.putdata([0 if cell else 1 for row in matrix for cell in row])
    image = image.resize((size * box_px, size * box_px), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def render_svg(
    text: str,
    *,
    border: int = QUIET_ZONE_MODULES,
    error_level: ErrorLevel = ERROR_LEVEL,
) -> bytes:
    """An SVG of the QR code: one path on a white background (so it also shows in dark mode)."""
    from qrcode.image.svg import SvgPathFillImage

    code = _make_code(text, error_level, border=border, image_factory=SvgPathFillImage)
    image = code.make_image()
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()


def render_image(text: str, image_format: ImageFormat) -> bytes:
    """PNG or SVG bytes of ``text``'s QR code."""
    if image_format == "png":
        return render_png(text)
    if image_format == "svg":
        return render_svg(text)
    raise InvalidInputError(f"unknown image format {image_format!r}; use png or svg")


def image_format_for(path: str | os.PathLike[str]) -> ImageFormat:
    """The image format a file name asks for, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return "png"
    if suffix == ".svg":
        return "svg"
    raise InvalidInputError(
        f"cannot tell the image format from {Path(path).name!r}",
        hint="Name the file *.png or *.svg.",
    )


def write_qr_file(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text``'s QR code to ``path`` (PNG or SVG by suffix), atomically.

    The image goes to a temporary file in the same folder, is flushed to disk,
    then renamed over ``path``: a reader never sees half an image, and a
    failure leaves any previous file as it was.
    """
    target = Path(path)
    data = render_image(text, image_format_for(target))
    folder = target.parent
    if not folder.is_dir():
        raise InvalidInputError(
            f"the folder {str(folder)!r} does not exist",
            hint="Choose a path in an existing folder.",
        )
    try:
        atomic_write(target, data, mode=0o666)  # 0o666 minus the umask, as for any user file
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write {str(target)!r}: {exc.strerror or exc}",
            hint="Check that the folder exists and that you may write to it.",
        ) from exc
    return target
