"""The peer for B3: magic-wormhole-mailbox-server 0.8.0 in its own venv, and its rendezvous.

Installed on first use into ``benchmarks/.peer-venv`` (gitignored) with the
venv's own pip, from the package index, so the project never depends on it.
Run as ``twist wormhole-mailbox --port=tcp:PORT:interface=127.0.0.1
--channel-db=:memory: --blur-usage=1``: SQLite in memory (its fastest
storage), and ``--blur-usage`` turns its per-connection request log off, as
``--no-access-log`` does for ours.

The equivalent of our rendezvous in its protocol (docs/server-protocol in
magic-wormhole-mailbox-server; every command is acknowledged with an "ack"):

    A: connect /v1 ← welcome; bind(appid, side A), allocate → allocated(nameplate)
       claim(nameplate) → claimed(mailbox); open(mailbox), add(phase, ~300 bytes)
    B: connect ← welcome; bind(appid, side B), claim(nameplate) → claimed(mailbox)
       open(mailbox) → message(from A)                       (the delivery)
       release, close → released, closed; websocket close
    A: release, close → released, closed; websocket close

B starts once A holds the nameplate (as our master's PUT starts once the QR
shows the channel uuid), and A closes once B has the message, so the mailbox is
deleted (both sides closed) and the nameplate freed: no state is left behind.
Commands that need no answer first are sent together, to spare the peer round
trips.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from loadgen import WsClient, start_process

PEER_PACKAGE = "magic-wormhole-mailbox-server==0.8.0"
VENV = Path(__file__).resolve().parent / ".peer-venv"
APPID = "textsecure-provision.example/bench"
BODY_HEX = os.urandom(150).hex()  # 300 characters on the wire, as our ~300-character body


def twist() -> Path:
    return VENV / "bin" / "twist"


def ensure_installed() -> str:
    """Create the venv and install the peer once; return its version."""
    python = VENV / "bin" / "python"
    if not twist().exists():
        print(f"installing {PEER_PACKAGE} into {VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                PEER_PACKAGE,
            ],
            check=True,
        )
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import wormhole_mailbox_server as m, twisted, autobahn;"
            "print(m.__version__, twisted.__version__, autobahn.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"magic-wormhole-mailbox-server {out[0]} (Twisted {out[1]}, autobahn {out[2]})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [
        str(twist()),
        "--log-format=text",
        "wormhole-mailbox",
        f"--port=tcp:{port}:interface=127.0.0.1",
        "--channel-db=:memory:",
        "--blur-usage=1",
    ]

    def ready() -> str | None:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return f"ws://127.0.0.1:{port}/v1"
        return None

    return start_process(args, ready, workdir / "peer.log", cwd=workdir)


async def _expect(ws: WsClient, kind: str) -> dict[str, object]:
    """Read frames until one of type ``kind`` (acks, the welcome and echoes are skipped)."""
    while True:
        msg = json.loads(await ws.recv())
        if msg.get("type") == kind:
            return msg  # type: ignore[no-any-return]
        if msg.get("type") == "error":
            raise RuntimeError(f"peer error: {msg.get('error')}")


def _send(ws: WsClient, *messages: dict[str, object]) -> None:
    for m in messages:
        ws.send_text(json.dumps(m))


async def rendezvous(host: str, port: int, state: object = None) -> None:
    """One rendezvous on the peer (see the module docstring)."""
    side_a, side_b = os.urandom(5).hex(), os.urandom(5).hex()
    a = await WsClient.connect(host, port, "/v1")
    b: WsClient | None = None
    try:
        await _expect(a, "welcome")
        _send(a, {"type": "bind", "appid": APPID, "side": side_a}, {"type": "allocate"})
        nameplate = (await _expect(a, "allocated"))["nameplate"]
        delivered = asyncio.get_running_loop().create_future()

        async def side_b_run() -> None:
            nonlocal b
            b = await WsClient.connect(host, port, "/v1")
            await _expect(b, "welcome")
            _send(
                b,
                {"type": "bind", "appid": APPID, "side": side_b},
                {"type": "claim", "nameplate": nameplate},
            )
            mailbox = (await _expect(b, "claimed"))["mailbox"]
            _send(b, {"type": "open", "mailbox": mailbox})
            while True:
                msg = await _expect(b, "message")
                if msg["side"] == side_a:
                    break
            if msg["body"] != BODY_HEX:
                raise RuntimeError("wrong body")
            delivered.set_result(None)
            _send(b, {"type": "release"}, {"type": "close", "mood": "happy"})
            await _expect(b, "closed")
            await b.close()

        task = asyncio.ensure_future(side_b_run())
        _send(a, {"type": "claim", "nameplate": nameplate})
        mailbox = (await _expect(a, "claimed"))["mailbox"]
        _send(
            a,
            {"type": "open", "mailbox": mailbox},
            {"type": "add", "phase": "pake", "body": BODY_HEX},
        )
        await delivered
        _send(a, {"type": "release"}, {"type": "close", "mood": "happy"})
        await _expect(a, "closed")
        await a.close()
        await task
    except BaseException:
        a.abort()
        if b is not None:
            b.abort()
        raise
