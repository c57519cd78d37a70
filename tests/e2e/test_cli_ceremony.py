"""The ceremony as people run it, without a terminal: options where people put them, help
that shows them, truthful errors (429 with its wait, a removed device), `provision reset`,
the order of actions (nothing requested or sent before a local check fails), and the
README's "For scripts" block run exactly as printed."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_helpers import REGISTRATION_CODE, Account, cli_env, folder_digest, new_number, run

README = Path(__file__).resolve().parents[2] / "README.md"


# -- 8: options where people put them ---------------------------------------------------------


def test_global_options_after_the_command_name(server, tmp_path: Path) -> None:
    home = tmp_path / "s"
    # No PROVISION_SERVER / PROVISION_HOME: only the late options say where.
    res = run("secondary", "--server", server.url, "--data-dir", str(home), "--json",
              "--timeout", "1")  # fmt: skip
    assert res.returncode == 3, res.stderr  # it reached the server and waited: timed out
    assert res.event("channel_opened")["link"].startswith("textsecure-device-init:")
    assert res.event("error")["exit_code"] == 3
    # The same with the subcommand named, and -v late too.
    res = run("secondary", "listen", "-v", "--server", server.url, "--timeout", "1", home=home)
    assert res.returncode == 3
    assert "INFO" in res.stderr or "Waiting" in res.stderr or "Scan this QR" in res.stderr


def test_late_server_option_wins_over_the_environment(server, tmp_path: Path) -> None:
    res = run("secondary", "--server", server.url, "--json", "--timeout", "1",
              home=tmp_path / "s", server="http://127.0.0.1:9")  # fmt: skip
    assert res.returncode == 3, res.stderr


def test_group_help_shows_the_default_subcommands_options() -> None:
    secondary = run("secondary", "--help")
    assert secondary.returncode == 0
    for option in ("--qr-out", "--expect-number", "--ascii", "--server"):
        assert option in secondary.stdout, option
    assert "(the default)" in secondary.stdout
    master = run("master", "--help")
    for option in ("--qr IMAGE", "--link URI", "--ack-timeout", "--wait"):
        assert option in master.stdout, option
    top = " ".join(run("--help").stdout.split())  # help wraps lines anywhere
    assert "--server URL Server base URL, for register and secondary [env PROVISION_SERVER]" in top
    assert "reset Unlink this device" in top


# -- 3: truthful messages ---------------------------------------------------------------------


def test_429_in_the_cli_error_event(make_server, tmp_path: Path) -> None:
    srv = make_server(extra_args=("--rate-limit", "registration_guess_address=1/3600"))
    number = new_number()
    home = tmp_path / "m"
    first = run("register", "--number", number, "--code", "000001", "--json", home=home,
                server=srv.url)  # fmt: skip
    assert first.returncode == 7  # a wrong code, counted
    second = run("register", "--number", number, "--code", "000002", "--json", home=home,
                 server=srv.url)  # fmt: skip
    assert second.returncode == 7
    error = second.event("error")
    assert error["error"] == "RateLimitedError"
    assert isinstance(error["retry_after"], int) and error["retry_after"] > 0
    assert f"Retry-After: {error['retry_after']}" in error["hint"]
    human = run("register", "--number", number, "--code", "000003", home=home, server=srv.url)
    assert human.returncode == 7
    assert re.search(r"Next: The server asks to wait \d+ (s|min|h)", human.stderr), human.stderr
    assert folder_digest(home) == "absent"


def test_malformed_server_answer_is_not_check_the_input(tmp_path: Path) -> None:
    # A plain HTTP server that answers 200 with HTML: as a proxy or a wrong URL would.
    import http.server
    import threading

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"<html>")

        do_PUT = do_GET

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Html)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        res = run("register", "--number", new_number(), "--code", "424242", home=tmp_path / "m",
                  server=url)  # fmt: skip
    finally:
        httpd.shutdown()
    assert res.returncode == 6, res.stderr
    assert "the server's answer is malformed (the body is not valid JSON)" in res.stderr
    assert "Check the input" not in res.stderr
    assert "operator" in res.stderr


# -- 4: a removed device, and the way out -----------------------------------------------------


def test_reset_unlinks_a_linked_device_and_deletes_its_folder(
    master: Account, tmp_path: Path, background
) -> None:
    home = tmp_path / "secondary"
    bg = background("secondary", "--json", "--expect-number", master.number, home=home,
                    server=master.server)  # fmt: skip
    link = bg.wait_event("channel_opened")["link"]
    assert run("master", "--link", link, "--yes", "--ack-timeout", "0",
               home=master.home).returncode == 0  # fmt: skip
    assert bg.wait() == 0
    # Without --yes and without a terminal: the answer is no, nothing is touched.
    before = folder_digest(home)
    res = run("reset", home=home)
    assert res.returncode == 4
    assert "Next: Nothing was unlinked or deleted." in res.stderr
    assert folder_digest(home) == before
    res = run("reset", "--yes", "--json", home=home)
    assert res.returncode == 0, res.stderr
    assert res.event("reset_unlinked")["device_id"] == 2
    assert res.event("reset_done")["unlinked"] is True
    assert not home.exists()
    listed = run("devices", "--json", home=master.home).events()[0]["devices"]
    assert [d["id"] for d in listed] == [1]
    # The folder is free again: the same data folder links anew.
    bg = background("secondary", "--json", "--expect-number", master.number, home=home,
                    server=master.server)  # fmt: skip
    link = bg.wait_event("channel_opened")["link"]
    assert run("master", "--link", link, "--yes", home=master.home).returncode == 0
    assert bg.wait() == 0


def test_reset_refuses_a_folder_that_is_not_a_data_folder(tmp_path: Path) -> None:
    home = tmp_path / "notes"
    home.mkdir(mode=0o700)
    (home / "diary.txt").write_text("mine")
    res = run("reset", "--yes", home=home)
    assert res.returncode == 9
    assert "does not look like a provision data folder" in res.stderr
    assert (home / "diary.txt").read_text() == "mine"
    assert run("reset", "--yes", home=tmp_path / "absent").returncode == 9


def test_secondary_over_an_old_folder_points_to_reset(master: Account) -> None:
    res = run("secondary", "--timeout", "1", home=master.home, server=master.server)
    assert res.returncode == 9
    assert "provision reset" in res.stderr


# -- 6, 9, 10: order of actions ---------------------------------------------------------------


def test_register_without_code_or_terminal_fails_before_requesting(make_server, tmp_path):
    srv = make_server()
    res = run("register", "--number", new_number(), home=tmp_path / "m", server=srv.url)
    assert res.returncode == 2
    assert "nothing was requested" in res.stderr
    srv.stop()
    assert "/v1/accounts/sms/code" not in srv.log()  # the server never saw a code request


def test_secondary_with_an_unusable_data_dir_fails_before_the_channel(server, tmp_path):
    (tmp_path / "file").write_text("x")
    res = run("secondary", "--json", "--timeout", "5", home=tmp_path / "file" / "d",
              server=server.url)  # fmt: skip
    assert res.returncode == 9
    assert [e["event"] for e in res.events()] == ["error"]  # no channel_opened first


def test_demo_keep_says_where_in_both_modes() -> None:
    res = run("demo", "--keep", "--json", timeout=120)
    assert res.returncode == 0, res.stderr
    kept = Path(res.event("demo_kept")["path"])
    try:
        assert kept.is_dir() and (kept / "secondary" / "device.json").exists()
    finally:
        import shutil

        shutil.rmtree(kept, ignore_errors=True)


# -- 7: the README's scripted link, exactly as printed ----------------------------------------


def write_stale_qr(path: Path, server_url: str) -> None:
    from textsecure_provision.crypto.keys import KeyPair
    from textsecure_provision.protocol.link import ProvisioningLink, build_link
    from textsecure_provision.qr.render import write_qr_file

    dead = ProvisioningLink(
        "0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10", server_url, KeyPair.generate().public
    )
    write_qr_file(build_link(dead), path)
    an_hour_ago = path.stat().st_mtime - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))


def readme_script_block() -> str:
    text = README.read_text()
    section = text.split("## For scripts", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the For scripts section should hold exactly one sh block"
    return blocks[0]


def test_readme_script_block_runs_verbatim(make_server, tmp_path: Path) -> None:
    srv = make_server()
    script = readme_script_block()
    # `provision` on PATH is this checkout's (whatever is installed elsewhere).
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "provision"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m textsecure_provision "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    work = tmp_path / "work"
    work.mkdir()
    # A stale image from an earlier run, as in the issue: the block must not scan it.
    write_stale_qr(work / "q.png", srv.url)
    env = cli_env(None, None)
    env.pop("PROVISION_HOME", None)
    env.pop("PROVISION_SERVER", None)
    env.update(PATH=f"{bindir}{os.pathsep}{env['PATH']}", URL=srv.url, CODE=REGISTRATION_CODE)
    # This checkout's package, also when the block runs in another folder.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(README.parent), env.get("PYTHONPATH")) if p)
    # Its own session: if the block fails half-way, the background secondary is killed too
    # (it would hold the output pipes open until its own timeout).
    proc = subprocess.Popen(
        ["sh", "-e", "-c", script], cwd=work, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=100)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, (stdout, stderr)
    assert (work / "new" / "device.json").exists()
    assert (work / "old" / "device.json").exists()
    assert "Device 2 confirmed the link" in stdout
    assert not (work / "q.png").exists()  # the secondary took its image away when done


@pytest.mark.parametrize("secondary_first", [True, False])
def test_master_wait_waits_for_a_new_image(master: Account, tmp_path: Path, background,
                                            secondary_first: bool) -> None:  # fmt: skip
    qr = tmp_path / "q.png"
    write_stale_qr(qr, master.server)  # left by an earlier run: a real code, a dead channel
    home = tmp_path / "s"

    def start_secondary():
        return background("secondary", "--json", "--qr-out", str(qr), "--expect-number",
                          master.number, home=home, server=master.server)  # fmt: skip

    bg = start_secondary() if secondary_first else None
    scan = subprocess.Popen(
        [sys.executable, "-m", "textsecure_provision", "master", "--qr", str(qr), "--wait", "60",
         "--yes", "--json"],
        env=cli_env(master.home, None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if bg is None:
        bg = start_secondary()
    out, err = scan.communicate(timeout=90)
    assert scan.returncode == 0, err
    assert '"event":"acknowledged"' in out
    assert bg.wait() == 0
    assert not qr.exists()
