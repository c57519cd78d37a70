"""What the server decides: the service layer between routes and storage.

Routes (``routes/``) parse a request, call one function here and render its
answer; ``fastpath.py`` calls the same functions. Everything that decides who
may do what, in which order and with which status lives here, one module per
concern:

* ``common.py``: what a registering or linking device asks for.
* ``guesses.py``: the budgets around every guess at a code (validate first,
  then spend; wrong guesses only; per address tight, per number loose).
* ``accounts.py``: registration codes and registering a master (lockout).
* ``devices.py``: provisioning codes, device limits, linking (the order in
  which a code is checked and consumed), unlinking.
* ``keys.py``: "device 1 sets the identity key"; handing out bundles under a
  per-(requester, target) limit.
* ``messages.py``: who may send to which devices (409/410), per-device queue
  quotas, fetch pages.
"""
