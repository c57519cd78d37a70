"""``provision register``: create the account; this device becomes device 1 (§4)."""

from __future__ import annotations

import re
import secrets

from textsecure_provision.clock import now_ms
from textsecure_provision.crypto.keys import KeyPair, Rng
from textsecure_provision.errors import InvalidInputError
from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.flows.keys import generate_device_keys, new_password, new_registration_id
from textsecure_provision.flows.ui import Ui
from textsecure_provision.protocol.encoding import parse_phone_number
from textsecure_provision.store import DeviceRecord
from textsecure_provision.transport.api import ApiClient, Credentials

_CODE = re.compile(r"[0-9A-Za-z]{1,32}")
NOTHING_REGISTERED = "nothing was registered and nothing was stored."
MAY_BE_REGISTERED = (
    "the server may have created the account, but nothing was stored here: run "
    "`provision register` again to start over."
)


def parse_registration_code(text: str) -> str:
    """The code as typed, without spaces or dashes ("123-456" → "123456")."""
    code = re.sub(r"[\s-]", "", text or "")
    if not _CODE.fullmatch(code):
        raise InvalidInputError("the registration code must be letters and digits")
    return code


async def register_account(
    config: FlowConfig,
    ui: Ui,
    number: str,
    *,
    code: str | None = None,
    name: str | None = None,
    rng: Rng = secrets.token_bytes,
) -> DeviceRecord:
    """Register ``number`` on ``config.server_url`` and store the new master's record.

    The record is committed last, after the account and its keys are on the
    server, so a failure leaves the data folder as it was (§8).
    """
    ui.state(NOTHING_REGISTERED)
    number = parse_phone_number(number)
    store = config.store()
    store.require_no_record()
    store.require_writable()  # before a code is requested: that costs an SMS on a real server
    server = config.require_server()
    password = new_password(rng)
    registration_id = new_registration_id(rng)
    async with ApiClient(server, Credentials(number, password), ca_file=config.ca_file) as api:
        if code is None:
            await api.request_registration_code(number)
            ui.event(
                "code_requested",
                f"A registration code for {number} was requested from {server}.",
                number=number,
            )
            code = ui.ask("Registration code")
        code = parse_registration_code(code)
        ui.state(MAY_BE_REGISTERED)
        device_id = await api.register_account(
            code, registration_id=registration_id, name=name
        )
        api.credentials = Credentials(number, password, device_id)
        identity = KeyPair.generate(rng)
        keys = generate_device_keys(identity, rng)
        await api.upload_keys(keys.upload_body(identity))
    record = DeviceRecord(
        number=number,
        device_id=device_id,
        password=password,
        server=server,
        registration_id=registration_id,
        identity=identity,
        signed_prekey=keys.signed_prekey,
        prekeys=keys.prekeys,
        last_resort_key=keys.last_resort_key,
        trusted_servers=tuple(config.trusted_servers),
        name=name,
        created_ms=now_ms(),
    )
    store.commit_record(record)
    ui.state(f"the account {number} is registered and stored in {store.path}.")
    ui.result(
        "account_registered",
        f"Registered {number} on {server}; this is device {device_id}.",
        number=number,
        device_id=device_id,
        server=server,
    )
    return record
