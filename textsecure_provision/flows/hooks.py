"""Hook points where the session layer (steps 7 and 8 of §1) joins the link flows.

* ``LinkedHook``: the secondary, right after its record is stored: fetch the
  account's bundles and send each other device NEW_DEVICE_REGISTERED.
* ``SentHook``: the master, right after the DeviceInit was accepted by the
  server: wait for that NEW_DEVICE_REGISTERED as the acknowledgement.

Both get the live ``ApiClient`` (authenticated as this device) and the ``Ui``.
Without hooks, the flows end at step 6.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textsecure_provision.flows.master import MasterLinkResult
    from textsecure_provision.flows.ui import Ui
    from textsecure_provision.store import DeviceRecord
    from textsecure_provision.transport.api import ApiClient

LinkedHook = Callable[["DeviceRecord", "ApiClient", "Ui"], Awaitable[None]]
SentHook = Callable[["MasterLinkResult", "DeviceRecord", "ApiClient", "Ui"], Awaitable[None]]
