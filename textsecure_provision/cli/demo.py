"""``provision demo``: run a whole link on loopback with a throw-away server and data folders."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.options import local_globals
from textsecure_provision.errors import UserInterruptError

DEMO_REGISTRATION_CODE = "424242"


@click.command()
@click.option("--keep", is_flag=True, help="Keep the temporary folder (its path is printed).")
@local_globals
def demo(settings: Settings, keep: bool) -> None:
    """Start a server on a free loopback port, register a master, link a secondary to it.

    Everything lives in a temporary folder (removed afterwards unless --keep);
    the real flows run, the QR code goes through a real PNG and the scanner,
    and each side's output is labelled. Exits 0 when the link succeeded.
    """
    import asyncio

    from textsecure_provision.cli.output import Output
    from textsecure_provision.cli.ui import CliUi
    from textsecure_provision.flows.demo import run_demo

    out = Output.from_settings(settings)
    workdir = Path(tempfile.mkdtemp(prefix="provision-demo-"))
    try:
        from textsecure_provision.server.process import ServerProcess

        server = ServerProcess(workdir, args=("--test-registration-code", DEMO_REGISTRATION_CODE))
        with server as server_url:
            out.progress("demo_server", f"Throw-away server at {server_url}", server=server_url)

            async def main() -> Any:
                link_shown = asyncio.Event()

                class SecondaryUi(CliUi):
                    def channel_opened(self, link: str, **kw: Any) -> None:
                        super().channel_opened(link, **kw)
                        link_shown.set()

                master_ui = CliUi(
                    Output(settings.json_mode, True, settings.verbose),
                    label="master",
                    extra={"side": "master"},
                )
                secondary_ui = SecondaryUi(
                    Output(settings.json_mode, True, settings.verbose),
                    qr_out=str(workdir / "qr.png"),
                    label="secondary",
                    extra={"side": "secondary"},
                )
                try:
                    return await run_demo(
                        server_url,
                        workdir,
                        master_ui,
                        secondary_ui,
                        link_shown,
                        registration_code=DEMO_REGISTRATION_CODE,
                    )
                finally:
                    master_ui.close()
                    secondary_ui.close()

            try:
                result = asyncio.run(main())
            except KeyboardInterrupt:
                where = f"its folder is kept: {workdir}" if keep else "its folder is removed"
                raise UserInterruptError(
                    f"the demo stopped; its throw-away server is stopped and {where}."
                ) from None
        ids = ", ".join(str(d.id) for d in result.devices)
        out.result(
            "demo_done",
            f"Demo done: {result.number} now has devices {ids}; "
            f"the link took {result.link_seconds:.2f} s.",
            number=result.number,
            device_id=result.device_id,
            devices=[d.id for d in result.devices],
            link_seconds=round(result.link_seconds, 3),
        )
    finally:
        if keep:  # also after a failure, and in --json (the `demo_kept` event)
            out.progress(
                "demo_kept",
                f"Kept the demo's folder (server log, data folders, QR image): {workdir}",
                path=str(workdir),
            )
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
