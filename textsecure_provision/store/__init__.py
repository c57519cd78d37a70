"""The device's data folder: atomic 0600 writes, permission checks, pending links."""

from textsecure_provision.store.record import DeviceRecord, PendingLink
from textsecure_provision.store.store import DeviceStore, default_data_dir

__all__ = ["DeviceRecord", "DeviceStore", "PendingLink", "default_data_dir"]
