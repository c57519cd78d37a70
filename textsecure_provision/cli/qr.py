"""``provision qr``: draw a provisioning link as a QR code, or read one from a picture.

Only click is imported at module level: ``qr.render`` / ``qr.scan`` (qrcode,
Pillow, zxing-cpp) and ``protocol.link`` (cryptography) are imported inside
the commands, so listing or ``--help`` stays fast.
"""

from __future__ import annotations

import sys

import click

from textsecure_provision.cli.context import Settings
from textsecure_provision.cli.options import qr_decoder_option
from textsecure_provision.cli.output import Output, colour_enabled


@click.group()
def qr() -> None:
    """Draw or decode provisioning QR codes.

    Every option can also be set in the environment (PROVISION_QR_ASCII=1,
    PROVISION_QR_ENCODE_OUT=code.png, ...).
    """


@qr.command("decode")
@click.argument("image", metavar="IMAGE")
@qr_decoder_option
@click.pass_obj
def decode(settings: Settings, image: str, qr_decoder: str) -> None:
    """Print the provisioning link held by the QR code in IMAGE (PNG, JPEG, ...).

    Exit 2 when the file is missing or not an image, holds no QR code or
    several different ones, or its QR code is not a provisioning link.
    """
    from textsecure_provision.protocol.encoding import b64encode
    from textsecure_provision.protocol.link import build_link
    from textsecure_provision.qr.scan import scan_link

    out = Output.from_settings(settings)
    link = scan_link(image, decoder=qr_decoder)
    text = build_link(link)
    out.result(
        "qr_decoded",
        text,
        link=text,
        channel_uuid=link.channel_uuid,
        channel_server=link.channel_server,
        public_key=b64encode(link.public_key.serialize()),
    )
    out.info(f"channel {link.channel_uuid} on {link.channel_server}")


@qr.command("encode")
@click.argument("link", metavar="LINK")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Write the QR code to this .png or .svg file instead of drawing it.",
)
@click.option(
    "--ascii",
    "ascii_only",
    is_flag=True,
    envvar="PROVISION_QR_ASCII",
    show_envvar=True,
    help="Draw with '#' and spaces (automatic when the terminal cannot show block characters).",
)
@click.option(
    "--invert",
    is_flag=True,
    envvar="PROVISION_QR_INVERT",
    show_envvar=True,
    help="Draw the dark modules instead of the light ones (light terminal theme with NO_COLOR).",
)
@click.pass_obj
def encode(settings: Settings, link: str, out: str | None, ascii_only: bool, invert: bool) -> None:
    """Draw the provisioning LINK as a QR code on stdout, or write it to --out FILE.

    LINK is checked first (exit 2 if it is not a provisioning link) and
    drawn in its canonical form.
    """
    from textsecure_provision.protocol.link import build_link, parse_link

    output = Output.from_settings(settings)
    text = build_link(parse_link(link))
    if out is not None:
        from textsecure_provision.qr.render import image_format_for, write_qr_file

        image_format = image_format_for(out)
        written = write_qr_file(text, out)
        output.result("qr_written", str(written), path=str(written), format=image_format, link=text)
        return

    from textsecure_provision.qr.render import needs_ascii, render_terminal

    # The encoding Python was given for stdout (PYTHONIOENCODING, the locale),
    # not click's stream: click quietly upgrades an ASCII stream to UTF-8.
    ascii_only = ascii_only or needs_ascii(getattr(sys.stdout, "encoding", None))
    stdout = click.get_text_stream("stdout")
    if settings.json_mode:
        drawing = render_terminal(text, ascii_only=ascii_only, invert=invert)
        output.emit("qr_encoded", link=text, ascii=ascii_only, drawing=drawing)
        return
    drawing = render_terminal(
        text, ascii_only=ascii_only, invert=invert, colour=colour_enabled(stdout)
    )
    click.echo(drawing, nl=False)
