"""Nameplates: the relay's side of links by short code (docs/protocol.md)."""
