"""`secondary listen` on a real pseudo-terminal: the QR block, the countdown, the prompt, colour."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_helpers import Account, cli_env, provision_args, run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")


class PtyProcess:
    """A process with stdin, stdout and stderr on one pseudo-terminal."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import pty

        self.leader, follower = pty.openpty()
        self.proc = subprocess.Popen(
            args, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True
        )
        os.close(follower)
        self.screen = ""

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
        return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.leader)


@pytest.fixture
def pty_process():
    started: list[PtyProcess] = []

    def start(args: list[str], env: dict[str, str]) -> PtyProcess:
        p = PtyProcess(args, env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def test_listen_draws_qr_and_countdown_without_colour(server, tmp_path: Path, pty_process) -> None:
    env = cli_env(tmp_path / "s", server.url, NO_COLOR="1", TERM="xterm-256color")
    term = pty_process(provision_args("secondary", "listen", "--timeout", "3"), env)
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
    term = pty_process(provision_args("secondary", "listen", "--timeout", "1"), env)
    assert term.wait() == 3
    assert "\x1b[" in term.screen  # the control for the test above: colour is on by default


def test_interactive_number_prompt(master: Account, tmp_path: Path, pty_process) -> None:
    home = tmp_path / "s"
    env = cli_env(home, master.server, NO_COLOR="1", TERM="xterm")
    term = pty_process(provision_args("secondary", "--print-link", "--timeout", "60"), env)
    link = term.expect(r"textsecure-device-init:\S+").group(0)
    term.expect("Waiting to be linked")
    # --ack-timeout 0: this test answers the secondary's prompt only after the master exits
    scan = run("master", "--link", link, "--yes", "--ack-timeout", "0", home=master.home)
    assert scan.returncode == 0, scan.stderr
    code = re.search(r"Confirmation code: (\d{3} \d{3})", scan.stdout).group(1)
    term.expect(rf"Confirmation code: {code}")
    term.expect(rf"Link this device to account \{master.number}\?.*\[y/N\]")
    term.send("y\n")
    assert term.wait() == 0, term.screen
    assert "Linked: this is device 2" in term.screen
    assert "\x1b[" not in term.screen
    assert (home / "device.json").exists()
