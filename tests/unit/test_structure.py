"""The project's shape: fresh generated code, lazy CLI imports, imports pointing one way."""

from __future__ import annotations

import ast
import importlib.util
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from import_probe import modules_loaded  # tests/, on sys.path (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "textsecure_provision"


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools (dev extra) not installed"
)
def test_generated_protobuf_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = sorted(p.name for p in tmp_path.glob("*_pb2.py*"))
    assert generated, "protoc produced nothing"
    for name in generated:
        committed = PKG / "proto" / name
        assert committed.exists(), f"{name} is not committed; run python tools/gen_protos.py"
        assert committed.read_bytes() == (tmp_path / name).read_bytes(), (
            f"{name} is stale; run python tools/gen_protos.py"
        )


HEAVY = [
    "httpx",
    "websockets",
    "qrcode",
    "zxingcpp",
    "PIL",
    "starlette",
    "uvicorn",
    "cryptography.hazmat",
    "google.protobuf",
    "aiosqlite",
    "asyncpg",
    "redis",
    "doubleratchet",
    "xeddsa",
    "textsecure_provision.server",
    "textsecure_provision.flows",
]


def test_help_imports_nothing_heavy() -> None:
    code = (
        "from textsecure_provision.cli.main import cli\n"
        "try:\n    cli.main(['--help'], prog_name='provision')\n"
        "except SystemExit:\n    pass\n"
    )
    loaded = modules_loaded(code, HEAVY)
    assert loaded == [], f"`provision --help` imported heavy modules: {loaded}"


def test_ack_path_imports_no_pydantic() -> None:
    """The master's acknowledgement wait loads the session layer: it must stay light (15.3)."""
    code = "import textsecure_provision.flows.acknowledge, textsecure_provision.flows.receive"
    assert modules_loaded(code, ["pydantic", "doubleratchet"]) == []


def test_the_link_path_leaves_unused_libraries_out() -> None:
    """What both sides of a link import, a request made (B2): none of the libraries they
    never use, each of which cost milliseconds to tens of milliseconds of every link
    process (httpx's own transport, httpcore on anyio, imports trio whenever installed)."""
    code = (
        "import asyncio\n"
        "import textsecure_provision.cli.master, textsecure_provision.cli.secondary\n"
        "import textsecure_provision.flows.master, textsecure_provision.flows.secondary\n"
        "import textsecure_provision.flows.acknowledge, textsecure_provision.flows.receive\n"
        "import textsecure_provision.flows.sessions, textsecure_provision.cli.ui\n"
        "from textsecure_provision.crypto.keys import KeyPair\n"
        "from textsecure_provision.errors import ServerUnreachableError\n"
        "from textsecure_provision.transport.api import ApiClient\n"
        "KeyPair.generate()\n"
        "async def main():\n"
        "    async with ApiClient('http://127.0.0.1:9') as api:\n"
        "        try:\n"
        "            await api.request_registration_code('+15550001111')\n"
        "        except ServerUnreachableError:\n"
        "            pass\n"
        "asyncio.run(main())\n"
    )
    unused = [
        "httpcore", "anyio", "sniffio", "trio", "h2", "rich", "pygments", "bcrypt", "pydantic",
        "doubleratchet", "cryptography.hazmat.primitives.serialization",
    ]  # fmt: skip
    assert modules_loaded(code, unused) == []


def test_a_command_starts_without_the_collector_and_gets_it_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Running a command pauses the cyclic collector (its runs over the growing heap were
    ~3 % of a link process, B2), once per process, and a timer turns it back on."""
    import gc

    import click

    from textsecure_provision.cli import main as cli_main

    calls: list[str] = []
    monkeypatch.setattr(cli_main, "pause_collector", lambda: calls.append("paused"))
    assert cli_main.cli.get_command(click.Context(cli_main.cli), "whoami") is not None
    assert calls == ["paused"]
    monkeypatch.undo()

    monkeypatch.setattr(cli_main, "COLLECTOR_PAUSE_S", 0.05)
    monkeypatch.setattr(cli_main, "_collector_paused", False)
    assert gc.isenabled()
    timer = cli_main.pause_collector()
    try:
        assert timer is not None
        assert not gc.isenabled()
        assert cli_main.pause_collector() is None  # once per process
        if sys.platform.startswith("linux"):  # the timer's thread takes no signal (SigBlk)
            status = Path(f"/proc/self/task/{timer.native_id}/status")
            blocked = 0
            for _ in range(500):  # its run() masks first thing; bounded, no sleep
                text = status.read_text() if status.exists() else ""
                blocked = int(text.split("SigBlk:")[1].split()[0], 16) if "SigBlk:" in text else 0
                if blocked or not timer.is_alive():
                    break
                timer.join(0.01)
            assert blocked & (1 << (signal.SIGINT - 1)), hex(blocked)
        timer.join(10)
        assert gc.isenabled()
    finally:
        gc.enable()


def test_the_command_leaves_its_heap_to_the_exit() -> None:
    """When a command ends, ``main`` freezes the heap, so the interpreter's exit skips its
    last full collection (tens of ms per link process, B2); output and exit codes are as
    before, on success and on an error."""
    code = (
        "import atexit, gc, sys\n"
        "from textsecure_provision.cli.main import main\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "main(sys.argv[1:])\n"
    )
    ok = subprocess.run(
        [sys.executable, "-c", code, "--version"], capture_output=True, text=True, check=True
    )
    assert ok.stdout.splitlines()[0].startswith("provision, version")
    assert ok.stdout.splitlines()[-1] == "frozen True"
    bad = subprocess.run(
        [sys.executable, "-c", code, "no-such-command"], capture_output=True, text=True
    )
    assert bad.returncode == 2, bad.stderr
    assert "No such command" in bad.stderr
    assert bad.stdout.splitlines()[-1] == "frozen True"


# Which rooms each room may import (STYLE.md): cli → flows → transport/store/qr → protocol → crypto → errors;
# atomic_write, clock and deadlines (like errors) import nothing of ours and serve the rooms at
# the edges (deadlines: those that wait on the network).
ALLOWED = {
    "errors": set(),
    "atomic_write": set(),
    "clock": set(),
    "deadlines": set(),
    "crypto": {"errors", "crypto"},
    "proto": {"proto"},
    "protocol": {"errors", "crypto", "proto", "protocol"},
    "qr": {"errors", "crypto", "protocol", "qr", "atomic_write"},
    "transport": {"errors", "crypto", "protocol", "transport", "clock", "deadlines"},
    "store": {"errors", "crypto", "protocol", "store", "atomic_write", "clock"},
    "flows": {
        "errors", "crypto", "protocol", "transport", "store", "qr", "flows", "clock", "deadlines"
    },
    "server": {"errors", "crypto", "protocol", "server", "atomic_write", "clock"},
    "cli": {
        "errors",
        "cli",
        "flows",
        "qr",
        "protocol",
        "crypto",
        "store",
        "transport",
        "server",
        "atomic_write",
        "clock",
    },
}


def _room(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


def test_imports_point_one_way() -> None:
    bad: list[str] = []
    for path in PKG.rglob("*.py"):
        room = _room(path)
        if room not in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if not name.startswith("textsecure_provision."):
                    continue
                target = name.split(".")[1]
                if target in ("__init__",):
                    continue
                if target not in ALLOWED[room] and target != room:
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_only_protocol_imports_generated_code() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        if _room(path) in ("protocol", "proto"):
            continue
        if "textsecure_provision.proto" in path.read_text().replace(
            "textsecure_provision.protocol", ""
        ):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_core_does_no_io() -> None:
    """crypto/ and protocol/ know no sockets, files, clocks or event loops."""
    forbidden = {
        "socket",
        "asyncio",
        "os",
        "pathlib",
        "time",
        "httpx",
        "websockets",
        "open",
        "sqlite3",
    }
    offenders = []
    for room in ("crypto", "protocol"):
        for path in (PKG / room).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    hit = {a.name.split(".")[0] for a in node.names} & forbidden
                elif isinstance(node, ast.ImportFrom) and node.module:
                    hit = {node.module.split(".")[0]} & forbidden
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "open"
                ):
                    hit = {"open"}
                else:
                    continue
                if hit:
                    offenders.append(f"{path.relative_to(ROOT)}: {sorted(hit)}")
    assert not offenders, offenders


def test_every_ui_is_a_whole_ui() -> None:
    """Flows call every ``Ui`` method directly (no getattr): each implementation has them all."""
    from textsecure_provision.cli.output import Output
    from textsecure_provision.cli.ui import CliUi
    from textsecure_provision.flows.ui import RecordingUi, Ui

    assert isinstance(RecordingUi(), Ui)
    assert isinstance(CliUi(Output(False, False, 0)), Ui)
    flows = PKG / "flows"
    assert not [p.name for p in flows.glob("*.py") if "getattr(ui" in p.read_text()]


def test_flows_import_no_circle() -> None:
    """A callback type lives with its caller: no flow module imports one that imports it back."""
    graph: dict[str, set[str]] = {}
    for path in (PKG / "flows").glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "textsecure_provision.flows."
            ):
                deps.add(node.module.rsplit(".", 1)[1])  # type: ignore[union-attr]
        graph[path.stem] = deps
    circles = sorted((a, b) for a, deps in graph.items() for b in deps if a in graph.get(b, ()))
    assert not circles, circles


def test_unit_tests_start_no_server() -> None:
    """Server-backed tests live in tests/integration (or hardening, e2e), not in tests/unit."""
    # The project's server, that is: a scripted loopback peer (asyncio, websockets) is a unit's.
    starts = re.compile(
        r"create_app\(|import uvicorn|ProvisionServer\(|"
        r"(?<!asyncio\.)start_server\(|LiveServer\(|running_server\("
    )
    offenders = [
        p.name
        for p in (ROOT / "tests" / "unit").glob("*.py")
        if p.name != "test_structure.py" and starts.search(p.read_text())
    ]
    assert not offenders, offenders


def test_one_wall_clock_in_milliseconds() -> None:
    """``clock.now_ms`` is the one place the package turns the wall clock into milliseconds."""
    pattern = re.compile(r"time\.time\(\) \* 1000|time_ns\(\) // 1_000_000")
    offenders = [
        str(p.relative_to(ROOT))
        for p in PKG.rglob("*.py")
        if p.name != "clock.py" and pattern.search(p.read_text())
    ]
    assert not offenders, offenders
