"""`provision qr encode|decode` as a user runs them: subprocesses, exit codes, --json lines."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from import_probe import modules_loaded  # tests/, on sys.path (tests/conftest.py)
from PIL import Image

from textsecure_provision.protocol.link import parse_link
from textsecure_provision.qr.render import render_png, render_terminal
from textsecure_provision.qr.scan import decode_qr_bytes

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "device_init.json"
LINK: str = json.loads(VECTORS.read_text())["qr_link"]
OTHER_LINK = LINK.replace("0b7e7a3c", "1c8f8b4d")


def provision(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
    full_env.pop("NO_COLOR", None)
    full_env["PYTHONIOENCODING"] = "utf-8"
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "textsecure_provision", *args],
        capture_output=True,
        text=True,
        encoding=full_env["PYTHONIOENCODING"],
        env=full_env,
        cwd=cwd,
        timeout=60,
    )


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# -- encode ----------------------------------------------------------------------------------


def test_encode_png_then_decode(tmp_path: Path) -> None:
    out = tmp_path / "code.png"
    encoded = provision("qr", "encode", LINK, "--out", str(out))
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout == f"{out}\n"
    assert decode_qr_bytes(out.read_bytes()) == [LINK]

    decoded = provision("qr", "decode", str(out))
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stdout == LINK + "\n"
    assert "0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10" in decoded.stderr  # details for humans


def test_decode_json(tmp_path: Path) -> None:
    image = tmp_path / "code.png"
    image.write_bytes(render_png(LINK))
    result = provision("--json", "qr", "decode", str(image))
    assert result.returncode == 0, result.stderr
    (event,) = json_lines(result.stdout)
    assert set(event) == {"event", "link", "channel_uuid", "channel_server", "public_key"}
    assert event["event"] == "qr_decoded"
    assert event["link"] == LINK
    assert event["channel_uuid"] == "0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10"
    assert event["channel_server"] == "https://relay.example.org"
    key = base64.b64decode(event["public_key"], validate=True)
    assert len(key) == 33 and key[0] == 0x05
    assert key == parse_link(LINK).public_key.serialize()


def test_encode_svg_json(tmp_path: Path) -> None:
    out = tmp_path / "code.svg"
    result = provision("--json", "qr", "encode", LINK, "--out", str(out))
    assert result.returncode == 0, result.stderr
    (event,) = json_lines(result.stdout)
    assert event == {"event": "qr_written", "path": str(out), "format": "svg", "link": LINK}
    assert ET.fromstring(out.read_bytes()).tag == "{http://www.w3.org/2000/svg}svg"


def test_encode_draws_half_blocks_on_stdout() -> None:
    result = provision("qr", "encode", LINK)
    assert result.returncode == 0, result.stderr
    # Byte-for-byte the drawing the unit tests re-scan (tests/unit/test_qr_render.py);
    # not a terminal, so no colour codes.
    assert result.stdout == render_terminal(LINK)
    assert "\x1b" not in result.stdout


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--ascii"], {}),
        ([], {"PROVISION_QR_ASCII": "1"}),
        ([], {"PYTHONIOENCODING": "latin-1"}),  # cannot encode ▀▄█: automatic fallback
    ],
    ids=["flag", "env", "encoding"],
)
def test_encode_ascii(args: list[str], env: dict[str, str]) -> None:
    result = provision("qr", "encode", LINK, *args, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_terminal(LINK, ascii_only=True)


@pytest.mark.parametrize(
    ("args", "env"), [(["--invert"], {}), ([], {"PROVISION_QR_INVERT": "1"})], ids=["flag", "env"]
)
def test_encode_invert(args: list[str], env: dict[str, str]) -> None:
    result = provision("qr", "encode", LINK, *args, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_terminal(LINK, invert=True)


def test_out_from_the_environment(tmp_path: Path) -> None:
    result = provision(
        "qr", "encode", LINK, env={"PROVISION_QR_ENCODE_OUT": "env.svg"}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "env.svg\n"
    assert ET.fromstring((tmp_path / "env.svg").read_bytes()) is not None


def test_encode_json_without_out_carries_the_drawing() -> None:
    result = provision("--json", "qr", "encode", LINK)
    assert result.returncode == 0, result.stderr
    (event,) = json_lines(result.stdout)
    assert event == {
        "event": "qr_encoded",
        "link": LINK,
        "ascii": False,
        "drawing": render_terminal(LINK),
    }


def test_encode_writes_the_canonical_form_of_a_liberal_link(tmp_path: Path) -> None:
    key = parse_link(LINK).public_key.serialize()
    liberal = LINK.split("&publicKey=")[0] + "&publicKey=" + base64.urlsafe_b64encode(key).decode()
    liberal = liberal.rstrip("=") + "&extra=ignored"
    out = tmp_path / "code.png"
    result = provision("qr", "encode", liberal, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert decode_qr_bytes(out.read_bytes()) == [LINK]


def test_encode_refuses_a_non_link(tmp_path: Path) -> None:
    out = tmp_path / "code.png"
    result = provision("qr", "encode", "hello", "--out", str(out))
    assert result.returncode == 2
    assert "Error: not a provisioning link" in result.stderr
    assert result.stdout == ""
    assert not out.exists()

    as_json = provision("--json", "qr", "encode", "hello")
    assert as_json.returncode == 2
    (event,) = json_lines(as_json.stdout)
    assert event["event"] == "error" and event["error"] == "LinkError"
    assert event["exit_code"] == 2


@pytest.mark.parametrize("name", ["code.gif", "missing/code.png"])
def test_encode_refuses_a_bad_out_path(tmp_path: Path, name: str) -> None:
    result = provision("qr", "encode", LINK, "--out", str(tmp_path / name))
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ")
    assert list(tmp_path.iterdir()) == []


# -- decode errors ---------------------------------------------------------------------------


def make_inputs(tmp_path: Path) -> dict[str, Path]:
    inputs = {
        "missing": tmp_path / "missing.png",
        "text": tmp_path / "notes.png",
        "blank": tmp_path / "blank.png",
        "hello": tmp_path / "hello.png",
        "two": tmp_path / "two.png",
    }
    inputs["text"].write_text("not a picture\n")
    inputs["blank"].write_bytes(png(Image.linear_gradient("L")))
    inputs["hello"].write_bytes(render_png("hello"))
    codes = [Image.open(io.BytesIO(render_png(t))) for t in (LINK, OTHER_LINK)]
    both = Image.new("L", (codes[0].width * 2, codes[0].height), 255)
    both.paste(codes[0], (0, 0))
    both.paste(codes[1], (codes[0].width, 0))
    inputs["two"].write_bytes(png(both))
    return inputs


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("missing", "NoSuchImageError", "no such file"),
        ("text", "NotAnImageError", "is not an image"),
        ("blank", "NoQrCodeError", "no QR code found"),
        ("hello", "LinkError", "not a provisioning link"),
        ("two", "SeveralQrCodesError", "2 different QR codes"),
    ],
)
def test_decode_errors_exit_2(tmp_path: Path, case: str, error: str, message: str) -> None:
    path = make_inputs(tmp_path)[case]
    human = provision("qr", "decode", str(path))
    assert human.returncode == 2
    assert human.stdout == ""
    assert f"Error: {message}" in human.stderr or message in human.stderr
    assert "Next: " in human.stderr

    as_json = provision("--json", "qr", "decode", str(path))
    assert as_json.returncode == 2
    (event,) = json_lines(as_json.stdout)
    assert event["event"] == "error"
    assert event["error"] == error
    assert event["exit_code"] == 2
    assert message in event["message"]


def test_decode_without_argument_is_a_usage_error() -> None:
    result = provision("qr", "decode")
    assert result.returncode == 2
    assert "Missing argument 'IMAGE'" in result.stderr


# -- start-up --------------------------------------------------------------------------------


def test_importing_the_qr_command_is_cheap() -> None:
    heavy = ["qrcode", "zxingcpp", "PIL", "numpy", "cryptography"]
    assert modules_loaded("import textsecure_provision.cli.qr, textsecure_provision.qr", heavy) == []


def test_qr_help_lists_both_commands() -> None:
    result = provision("qr", "--help")
    assert result.returncode == 0
    assert "decode" in result.stdout and "encode" in result.stdout


# -- colour on a terminal --------------------------------------------------------------------


def run_on_pty(*args: str, env: dict[str, str]) -> str:
    """Run `provision` with stdout on a pseudo-terminal; return what the terminal got."""
    pty = pytest.importorskip("pty")
    main_fd, child_fd = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISION_")}
    full_env.pop("NO_COLOR", None)
    full_env.update(env, PYTHONIOENCODING="utf-8")
    with subprocess.Popen(
        [sys.executable, "-m", "textsecure_provision", *args],
        stdout=child_fd,
        stderr=subprocess.DEVNULL,
        env=full_env,
    ) as process:
        os.close(child_fd)
        chunks = []
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0
    os.close(main_fd)
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_terminal_gets_explicit_colours_unless_no_color() -> None:
    coloured = run_on_pty("qr", "encode", LINK, env={})
    assert coloured == render_terminal(LINK, colour=True)
    plain = run_on_pty("qr", "encode", LINK, env={"NO_COLOR": "1"})
    assert plain == render_terminal(LINK)


def _zbar_missing() -> str | None:
    from textsecure_provision.errors import QrDecoderUnavailableError
    from textsecure_provision.qr.scan import reader

    try:
        reader("zbar")
    except QrDecoderUnavailableError as exc:
        return exc.message
    return None


@pytest.mark.skipif(_zbar_missing() is not None, reason=str(_zbar_missing()))
def test_decode_with_zbar_flag_and_env(tmp_path: Path) -> None:
    image = tmp_path / "code.png"
    image.write_bytes(render_png(LINK))
    by_flag = provision("--json", "qr", "decode", "--qr-decoder", "zbar", str(image))
    assert by_flag.returncode == 0, by_flag.stderr
    assert json_lines(by_flag.stdout)[-1]["link"] == LINK
    blank = tmp_path / "blank.png"
    blank.write_bytes(png(Image.new("L", (200, 200), 255)))
    by_env = provision("qr", "decode", str(blank), env={"PROVISION_QR_DECODER": "zbar"})
    assert by_env.returncode == 2
    assert "no QR code found" in by_env.stderr


def test_unknown_qr_decoder_is_a_usage_error(tmp_path: Path) -> None:
    result = provision("qr", "decode", "--qr-decoder", "zebra", str(tmp_path / "x.png"))
    assert result.returncode == 2
    assert "'zebra' is not one of 'zxing', 'zbar'" in result.stderr
