"""The worker side of the Royal Render boundary: everything that touches the vendor's module.

These modules run in the worker process, possibly under another Python
than the daemon's (``royalrender.python``, for the version the RR
installation ships a module for). So they use the standard library only and
the syntax of Python 3.7, and import nothing from the daemon's side.

- ``worker``: the process's main loop and its private protocol channel;
- ``module``: finding and importing the vendor's module;
- ``calls``: calling vendor members so one bad member costs only its values;
- ``api``: the documented API as a checklist, for ``rr-probe``;
- one extractor per file kind, turning a loaded file into plain data.
"""
