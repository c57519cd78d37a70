"""One async function per user task; the only place the core meets transport and store.

Each takes a ``FlowConfig`` and a ``Ui`` (flows/ui.py), so the CLI, ``provision
demo`` and tests stay thin. Import the submodule you need (``flows.master``,
``flows.secondary``, ...): this package imports nothing heavy by itself.
"""
