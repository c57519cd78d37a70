"""Links by short code through the real CLI and a real `provision server`.

Two CLIs: `provision secondary` shows a code, `provision master --code` types
it. The master's JSON events and exit codes are a QR link's; a wrong code ends
both with exit 4; a server with short codes off shows none and says why; and
on an 80x24 terminal the `provision master --code ...` line is on screen.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from e2e_helpers import REGISTRATION_CODE, Account, cli_env, new_number, provision_args, run

from textsecure_provision.protocol.wordlist import WORDS

CODE_RE = r"[0-9]+(?:-[a-z]+){2}"


def wrong_secret(code: str) -> str:
    nameplate, first, *rest = code.split("-")
    return "-".join([nameplate, WORDS[(WORDS.index(first) + 1) % len(WORDS)], *rest])


def test_link_by_code_with_two_clis(server, master: Account, tmp_path: Path, background) -> None:
    home = tmp_path / "secondary"
    secondary = background(
        "secondary", "--json", "--expect-number", master.number, home=home, server=master.server
    )
    opened = secondary.wait_event("channel_opened")
    assert re.fullmatch(CODE_RE, opened["code"]), opened
    started = time.monotonic()
    linked = run("master", "--code", opened["code"], "--yes", "--json", home=master.home)
    assert linked.returncode == 0, linked.stderr
    assert secondary.wait() == 0, secondary.stderr()
    print(
        f"\ncode link wall time (master start to both exited): {time.monotonic() - started:.3f} s"
    )
    # The master's events are exactly those of a QR link (run one to compare).
    qr_side = background(
        "secondary", "--json", "--expect-number", master.number, home=tmp_path / "qr",
        server=master.server,
    )  # fmt: skip
    link = qr_side.wait_event("channel_opened")["link"]
    by_qr = run("master", "--link", link, "--yes", "--json", home=master.home)
    assert by_qr.returncode == 0, by_qr.stderr
    assert qr_side.wait() == 0, qr_side.stderr()
    assert [e["event"] for e in linked.events()] == [e["event"] for e in by_qr.events()]
    assert linked.events()[-1]["event"] == "acknowledged"
    assert linked.event("link_parsed")["channel_uuid"] == opened["channel_uuid"]
    assert secondary.names() == [
        "channel_opened",
        "device_init_received",
        "registered",
        "announced",
    ]
    code = linked.event("sent")["confirmation_code"]
    assert secondary.seen_event("device_init_received")["confirmation_code"] == code
    assert linked.event("acknowledged")["device_id"] == 2
    whoami = run("whoami", "--json", home=home).events()[0]
    assert (whoami["number"], whoami["device_id"]) == (master.number, 2)
    assert [e["event"] for e in secondary.seen] == [e["event"] for e in qr_side.seen]
    # The secret words reach no log: not the server's, not the clients' stderr.
    words = opened["code"].split("-")[1:]
    for text in (server.log(), secondary.stderr(), linked.stderr):
        assert not any(f"-{w}" in text or f" {w}" in text for w in words), text[-2000:]


def test_human_output_shows_the_code_line(master: Account, tmp_path: Path, background) -> None:
    secondary = background("secondary", "--timeout", "2", home=tmp_path / "s", server=master.server)
    assert secondary.wait() == 3
    assert re.search(
        rf"Or, on your other device: provision master --code {CODE_RE}\n", secondary.stderr()
    )


def test_wrong_code_fails_both_sides(master: Account, tmp_path: Path, background) -> None:
    home = tmp_path / "secondary"
    secondary = background("secondary", "--json", home=home, server=master.server)
    code = secondary.wait_event("channel_opened")["code"]
    typed = run("master", "--code", wrong_secret(code), "--yes", "--json", home=master.home)
    assert typed.returncode == 4, typed.stderr
    error = typed.event("error")
    assert "the code did not match" in error["message"]
    assert secondary.wait() == 4
    assert "someone tried a wrong code" in secondary.seen_event("error")["message"]
    assert not home.exists() or not (home / "device.json").exists()
    devices = run("devices", "--json", home=master.home).events()[0]["devices"]
    assert [d["id"] for d in devices] == [1]  # the account is unchanged
    again = run("master", "--code", code, "--yes", "--json", home=master.home)
    assert again.returncode == 7  # burned: kept as burned after its channel closed
    assert "this short code is burned" in again.event("error")["message"]


def test_no_code_flag_and_typo(master: Account, tmp_path: Path, background) -> None:
    secondary = background(
        "secondary",
        "--json",
        "--no-code",
        "--timeout",
        "5",
        home=tmp_path / "s",
        server=master.server,
    )
    assert "code" not in secondary.wait_event("channel_opened")
    typo = run("master", "--code", "1-notaword-tiger", "--json", home=master.home)
    assert typo.returncode == 2
    assert "word 1 of the code is not in the word list" in typo.event("error")["message"]
    both = run("master", "--code", "1-acme-tiger", "--link", "x", home=master.home)
    assert both.returncode == 2 and "give one of --qr, --link and --code" in both.stderr
    asked = run("master", "--code", home=master.home)  # no value, no terminal to ask on
    assert asked.returncode == 2 and "--code needs the code" in asked.stderr
    secondary.kill()


def test_server_without_short_codes(make_server, tmp_path: Path, background) -> None:
    old = make_server(extra_args=("--no-short-codes",))
    number = new_number()
    home = tmp_path / "master"
    reg = run(
        "register", "--number", number, "--code", REGISTRATION_CODE, home=home, server=old.url
    )
    assert reg.returncode == 0, reg.stderr
    secondary = background(
        "secondary", "--json", "--timeout", "5", home=tmp_path / "s", server=old.url
    )
    assert "code" not in secondary.wait_event("channel_opened")
    typed = run("master", "--code", "1-acme-tiger", "--yes", "--json", home=home)
    assert typed.returncode == 7
    error = typed.event("error")
    assert "does not offer links by short code" in error["message"]
    assert "QR code" in error["hint"]
    secondary.kill()


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")
def test_code_line_on_an_80x24_terminal(master: Account, tmp_path: Path) -> None:
    import pty
    import select

    leader, follower = pty.openpty()
    fcntl.ioctl(leader, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = cli_env(
        tmp_path / "s", master.server, NO_COLOR="1", TERM="xterm", COLUMNS="80", LINES="24"
    )
    proc = subprocess.Popen(
        provision_args("secondary", "--timeout", "30"),
        stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    screen = ""
    try:
        deadline = time.monotonic() + 30
        while "Waiting to be linked" not in screen:
            assert time.monotonic() < deadline and proc.poll() is None, screen[-2000:]
            if select.select([leader], [], [], 0.2)[0]:
                screen += os.read(leader, 65536).decode("utf-8", errors="replace")
    finally:
        proc.kill()
        proc.wait()
        os.close(leader)
    # What an 80x24 terminal shows: the last 24 lines, each as left by its last \r.
    lines = [line.rsplit("\r", 1)[-1] for line in screen.replace("\r\n", "\n").split("\n")]
    visible = lines[-24:]
    found = [
        line
        for line in visible
        if re.fullmatch(
            rf"Or, on your other device: provision master --code {CODE_RE}", line.strip()
        )
    ]
    assert found, "\n".join(visible)
    assert all(len(line) <= 80 for line in found)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")
def test_master_code_alone_asks_on_a_terminal(master: Account, tmp_path: Path, background) -> None:
    import pty
    import select

    secondary = background(
        "secondary", "--json", "--expect-number", master.number, home=tmp_path / "s",
        server=master.server,
    )  # fmt: skip
    code = secondary.wait_event("channel_opened")["code"]
    leader, follower = pty.openpty()
    env = cli_env(master.home, None, NO_COLOR="1", TERM="xterm")
    proc = subprocess.Popen(
        provision_args("master", "--code", "--yes"),
        stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    screen = ""
    try:
        deadline = time.monotonic() + 60
        sent = False
        while proc.poll() is None:
            assert time.monotonic() < deadline, screen[-2000:]
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    screen += os.read(leader, 65536).decode("utf-8", errors="replace")
                except OSError:  # EIO: the child closed the terminal
                    break
            if not sent and "Type the code" in screen:
                os.write(leader, (code + "\n").encode())
                sent = True
        assert proc.wait(timeout=30) == 0, screen[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    assert "Confirmation code:" in screen
    assert secondary.wait() == 0, secondary.stderr()


def test_word_completion() -> None:
    from textsecure_provision.cli.shortcode import completions

    assert completions("7-rev") == ["7-revenge"]
    assert completions("7-revenge-ti") == ["7-revenge-tiger", "7-revenge-tissue"]
    assert completions("7") == []  # the number is not completed
    assert completions("7-qqq") == []
