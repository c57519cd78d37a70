"""The CLI on a real pseudo-terminal: the QR block, the countdown, the prompts, colour, the
typed confirmation code, Ctrl-C at each prompt (exit 130 with the state), the small-terminal
message, and, in tmux, the QR code decoded from a screen capture and redrawn on a resize.

The pty is the child's controlling terminal (its own session, TIOCSCTTY), as in a shell:
a ^C byte written to it becomes SIGINT, and a new window size becomes SIGWINCH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_helpers import Account, cli_env, new_number, provision_args, run, wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")


def _take_terminal() -> None:
    # In the child, after setsid: the pty on fd 0 becomes its controlling terminal.
    import fcntl
    import signal
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    # As a shell starts a foreground job: Ctrl-C and Ctrl-\ at their defaults. A suite started
    # in the background (`pytest &` in a script) ignores both, and the child would inherit that
    # and rightly ignore the ^C, as any Unix program started with SIGINT ignored does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


class PtyProcess:
    """A process with stdin, stdout and stderr on one pseudo-terminal it controls."""

    def __init__(self, args: list[str], env: dict[str, str], size: tuple[int, int] = (80, 24)):
        import pty

        self.leader, follower = pty.openpty()
        self.resize(*size)
        self.proc = subprocess.Popen(
            args,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env=env,
            close_fds=True,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(follower)
        self.screen = ""

    def resize(self, columns: int, rows: int) -> None:
        """Set the window size; the kernel sends SIGWINCH to the foreground process."""
        import fcntl
        import struct
        import termios

        fcntl.ioctl(self.leader, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def since(self, mark: int) -> str:
        return self.screen[mark:]

    def _read(self, wait_s: float) -> bool:
        import select

        ready, _, _ = select.select([self.leader], [], [], wait_s)
        if not ready:
            return True
        try:
            data = os.read(self.leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.screen += data.decode("utf-8", errors="replace")
        return bool(data)

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.screen)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not drawn; screen: {self.screen[-2000:]!r}")
            if not self._read(0.2) and self.proc.poll() is not None:
                raise AssertionError(f"exited before {pattern!r}: {self.screen[-2000:]!r}")

    def send(self, text: str) -> None:
        os.write(self.leader, text.encode())

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.2):
            if self.proc.poll() is not None and not self._read(0.05):
                break
        try:
            return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {timeout} s; {_signal_state(self.proc.pid)}; "
                f"screen: {self.screen[-1500:]!r}"
            ) from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.leader)


def _signal_state(pid: int) -> str:
    """What a process that ignores a Ctrl-C is doing: its signal masks and its threads."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "no /proc status"
    keep = ("SigBlk", "SigIgn", "SigCgt", "SigPnd", "ShdPnd", "Threads", "State")
    return ", ".join(line for line in status.splitlines() if line.startswith(keep))


@pytest.fixture
def pty_process():
    started: list[PtyProcess] = []

    def start(args: list[str], env: dict[str, str], size: tuple[int, int] = (80, 24)) -> PtyProcess:
        p = PtyProcess(args, env, size)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def test_listen_draws_qr_and_countdown_without_colour(server, tmp_path: Path, pty_process) -> None:
    env = cli_env(tmp_path / "s", server.url, NO_COLOR="1", TERM="xterm-256color")
    term = pty_process(provision_args("secondary", "listen", "--timeout", "3"), env, (120, 50))
    assert term.wait() == 3  # nobody scanned: timed out
    screen = term.screen
    assert any(block in screen for block in ("\u2580", "\u2584", "\u2588")), screen
    assert "Scan this QR code" in screen
    assert "Waiting to be linked: giving up in 0:03" in screen
    assert "giving up in 0:01" in screen  # the countdown counts down...
    assert screen.count("\rWaiting to be linked") >= 2  # ...rewriting one line in place
    assert "\x1b[" not in screen  # no colour, nor any other escape sequence
    assert "Next:" in screen  # the error ends with what to do next
    assert not (tmp_path / "s").exists()


def test_listen_uses_colour_on_a_terminal_without_no_color(
    server, tmp_path: Path, pty_process
) -> None:
    env = cli_env(tmp_path / "s", server.url, TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    term = pty_process(provision_args("secondary", "listen", "--timeout", "1"), env, (120, 50))
    assert term.wait() == 3
    assert "\x1b[" in term.screen  # the control for the test above: colour is on by default


def start_listening(pty_process, home: Path, server: str, *args: str, size=(120, 50)):
    env = cli_env(home, server, NO_COLOR="1", TERM="xterm")
    term = pty_process(provision_args("secondary", "--print-link", *args), env, size)
    link = term.expect(r"textsecure-device-init:\S+").group(0)
    term.expect("Waiting to be linked")
    return term, link


def scan_no_wait(master: Account, link: str) -> str:
    """The master's side, done (--ack-timeout 0); returns the confirmation code it printed."""
    scan = run("master", "--link", link, "--yes", "--ack-timeout", "0", home=master.home)
    assert scan.returncode == 0, scan.stderr
    return re.search(r"Confirmation code: (\d{3} \d{3})", scan.stdout).group(1)


def test_typed_code_then_number_prompt(master: Account, tmp_path: Path, pty_process) -> None:
    home = tmp_path / "s"
    term, link = start_listening(pty_process, home, master.server, "--timeout", "60")
    code = scan_no_wait(master, link)
    term.expect(r"Confirmation code shown on the other device: $")
    # Not shown here: the person must read it on the other device, not copy it from this one.
    assert code not in term.screen and code.replace(" ", "") not in term.screen
    term.send(code.replace(" ", "-") + "\n")  # as typed from the other screen, dashes ignored
    term.expect(rf"Link this device to account \{master.number}\?.*\[y/N\]")
    term.send("y\n")
    assert term.wait() == 0, term.screen
    assert "Linked: this is device 2" in term.screen
    assert "\x1b[" not in term.screen
    assert (home / "device.json").exists()


def test_wrong_typed_code_exits_4_and_registers_nothing(
    master: Account, tmp_path: Path, pty_process
) -> None:
    home = tmp_path / "s"
    term, link = start_listening(pty_process, home, master.server, "--timeout", "60")
    code = scan_no_wait(master, link)
    term.expect(r"Confirmation code shown on the other device: $")
    wrong = "111 111" if code != "111 111" else "222 222"
    term.send(wrong + "\n")
    assert term.wait() == 4, term.screen
    assert "does not match" in term.screen
    assert "Nothing was registered" in term.screen
    assert "Link this device" not in term.screen  # it stopped before the number
    assert not home.exists()
    listed = run("devices", "--json", home=master.home).events()[0]["devices"]
    assert [d["id"] for d in listed] == [1]


def assert_interrupted(term: PtyProcess, state: str) -> None:
    assert term.wait() == 130, term.screen
    lines = [line for line in term.screen.splitlines() if "Interrupted" in line]
    assert len(lines) == 1, term.screen
    assert state in lines[0], lines[0]
    assert "Aborted" not in term.screen and "Traceback" not in term.screen


def test_ctrl_c_at_the_code_prompt(master: Account, tmp_path: Path, pty_process) -> None:
    home = tmp_path / "s"
    term, link = start_listening(pty_process, home, master.server, "--timeout", "60")
    scan_no_wait(master, link)
    term.expect(r"Confirmation code shown on the other device: $")
    term.send("\x03")  # one Ctrl-C is enough
    assert_interrupted(term, "Interrupted: the link was received but not used")
    assert not home.exists()


def test_ctrl_c_at_the_number_prompt(master: Account, tmp_path: Path, pty_process) -> None:
    home = tmp_path / "s"
    term, link = start_listening(pty_process, home, master.server, "--timeout", "60")
    code = scan_no_wait(master, link)
    term.expect(r"Confirmation code shown on the other device: $")
    term.send(code + "\n")
    term.expect(r"\[y/N\]")
    term.send("\x03")
    assert_interrupted(term, "nothing was linked or stored here")
    assert not home.exists()


def test_ctrl_c_while_waiting_to_be_linked(server, tmp_path: Path, pty_process) -> None:
    term, _ = start_listening(pty_process, tmp_path / "s", server.url, "--timeout", "60")
    term.send("\x03")
    assert_interrupted(term, "Interrupted: nothing was linked and nothing was stored.")


def test_ctrl_c_at_the_masters_consent_prompt(master: Account, tmp_path: Path, pty_process,
                                               background) -> None:  # fmt: skip
    bg = background("secondary", "--json", "--expect-number", master.number,
                    home=tmp_path / "s", server=master.server)  # fmt: skip
    link = bg.wait_event("channel_opened")["link"]
    term = pty_process(provision_args("master", "--link", link), cli_env(master.home, None))
    term.expect(r"Link a new device to \+\d+\? \[y/N\]")
    term.send("\x03")
    assert_interrupted(term, "Interrupted: nothing was sent and nothing was linked.")
    bg.kill()


def test_ctrl_c_after_sending_says_it_may_still_complete(
    master: Account, tmp_path: Path, pty_process, background
) -> None:
    # The secondary receives but is stopped before it registers: the master waits, and is
    # interrupted while the link could still complete.
    bg = background("secondary", "--json", "--no-verify", "--expect-number", master.number,
                    home=tmp_path / "s", server=master.server)  # fmt: skip
    link = bg.wait_event("channel_opened")["link"]
    term = pty_process(provision_args("master", "--link", link, "--yes"),
                       cli_env(master.home, None))  # fmt: skip
    term.expect("Waiting for the new device to confirm the link")
    term.send("\x03")
    assert_interrupted(term, "the link was sent; the new device may still complete it")
    assert "provision devices" in term.screen
    assert bg.wait() == 0


def test_ctrl_c_at_the_registration_code_prompt(server, tmp_path: Path, pty_process) -> None:
    term = pty_process(
        provision_args("register", "--number", new_number()), cli_env(tmp_path / "m", server.url)
    )
    term.expect(r"Registration code: $")
    term.send("\x03")
    assert_interrupted(term, "Interrupted: nothing was registered and nothing was stored.")
    assert not (tmp_path / "m").exists()


def test_ctrl_c_at_the_remove_prompt(master: Account, pty_process) -> None:
    term = pty_process(provision_args("devices", "remove", "2"), cli_env(master.home, None))
    term.expect(r"Unlink device 2\? \[y/N\]")
    term.send("\x03")
    assert_interrupted(term, "Interrupted: nothing was removed.")


def test_small_terminal_says_so_shows_the_link_and_draws_when_it_grows(
    server, tmp_path: Path, pty_process
) -> None:
    env = cli_env(tmp_path / "s", server.url, NO_COLOR="1", TERM="xterm")
    term = pty_process(provision_args("secondary", "--timeout", "60"), env, (80, 24))
    found = term.expect(r"The QR code needs (\d+)x(\d+); this terminal is 80x24")
    need_cols, need_rows = int(found.group(1)), int(found.group(2))
    assert need_cols <= 80 and need_rows > 24  # L level, 2-module margin: only too short
    term.expect(r"textsecure-device-init:\S+")
    term.expect("Waiting to be linked")
    assert not any(block in term.screen for block in ("\u2580", "\u2584", "\u2588"))
    assert "Scan this QR code" not in term.screen
    assert all(len(line) <= 80 for line in term.screen.splitlines() if "link" in line.lower()
               and "textsecure-device-init" not in line)  # fmt: skip
    mark = len(term.screen)
    term.resize(120, 50)  # SIGWINCH: now it fits
    term.expect("Scan this QR code")
    assert "\u2588" in term.since(mark)
    term.send("\x03")
    assert term.wait() == 130


def tmux_available() -> bool:
    import shutil

    return shutil.which("tmux") is not None


@pytest.mark.skipif(not tmux_available(), reason="needs tmux for a real screen capture")
def test_qr_decodes_from_a_tmux_screen_capture_and_after_a_resize(
    server, tmp_path: Path
) -> None:
    """A real terminal emulator (tmux) at 120x50 draws the QR code; its screen, captured
    as text and painted like a dark terminal, decodes to the link. Started at 80x24 it
    shows the message instead, and draws the code once the window grows."""
    import shlex

    events = tmp_path / "events.jsonl"
    env = cli_env(tmp_path / "s", server.url, NO_COLOR="1", TERM="xterm")
    command = " ".join(shlex.quote(a) for a in provision_args("secondary", "--json", "--timeout", "90"))
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(
        ("PROVISION_", "NO_COLOR", "PYTHON", "PATH", "TERM")))  # fmt: skip
    session = f"h13-{os.getpid()}"
    for n, (size, grow) in enumerate((((120, 50), False), ((80, 24), True))):
        # A tmux server of its own each time (its own socket): the default one is shared with
        # whatever else runs tmux here, and a server whose last session was just killed can
        # still be exiting when the next new-session reaches it ("server exited unexpectedly").
        tmux = ["tmux", "-S", str(tmp_path / f"tmux{n}.sock")]
        events.unlink(missing_ok=True)
        subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", str(size[0]), "-y",
                        str(size[1]), f"env {exports} {command} > {shlex.quote(str(events))}"],
                       check=True, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
        try:
            link = wait_for(lambda: _first_link(events), 30, "the channel_opened event")
            if grow:
                screen = wait_for(
                    lambda tmux=tmux: _pane(tmux, session, "Enlarge it"), 30, "the small message"
                )
                assert "\u2588" not in screen and link[:60] in screen.replace("\n", "")
                subprocess.run([*tmux, "resize-window", "-t", session, "-x", "120", "-y", "50"],
                               check=True)  # fmt: skip
            # tmux may be caught half-way through painting: wait until the screen decodes.
            decoded = wait_for(
                lambda tmux=tmux: decode_screen(_pane(tmux, session, "\u2588" * 20) or "", 120),
                30,
                "a QR code on the screen that decodes",
            )
            assert decoded == [link]
        finally:
            subprocess.run([*tmux, "kill-server"], check=False)


def _first_link(events: Path) -> str | None:
    import json

    for line in events.read_text().splitlines() if events.exists() else []:
        if line.strip():
            return json.loads(line).get("link")
    return None


def _pane(tmux: list[str], session: str, needle: str) -> str | None:
    out = subprocess.run([*tmux, "capture-pane", "-t", session, "-p"], capture_output=True,
                         text=True, encoding="utf-8", check=False).stdout  # fmt: skip
    return out if needle in out else None


def decode_screen(screen: str, columns: int) -> list[str]:
    """Paint a captured screen as the terminal shows it (glyphs light, all else dark)."""
    import zxingcpp
    from PIL import Image

    glyphs = {" ", "\u2580", "\u2584", "\u2588"}
    rows: list[list[bool]] = []
    for line in screen.splitlines():
        line = line.ljust(columns)[:columns]
        if line.strip() and set(line) <= glyphs:
            rows.append([c in "\u2580\u2588" for c in line])
            rows.append([c in "\u2584\u2588" for c in line])
        else:  # text, or empty: the dark background (text glyphs are too thin to matter)
            rows += [[False] * columns, [False] * columns]
    if not rows:
        return []
    px = 4
    image = Image.new("L", (columns, len(rows)))
    image.putdata([255 if light else 0 for row in rows for light in row])
    image = image.resize((columns * px, len(rows) * px), Image.Resampling.NEAREST)
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode, try_invert=False)
    return [b.text for b in found]
