"""Not Royal Render, not Rush: a demo farm and the stand-in for RR's vendor module.

- ``demo``: ``--demo``, the real daemon on a farm that writes live statistics;
- ``simulator``: writes RR statistics files in the stand-in's format;
- ``standin`` and ``simformat``: the stand-in module (``royalrender.module:
  simulated``) and its file format. The stand-in is imported by the RR
  worker, so this package's ``__init__`` and those two modules use the
  standard library only.
"""
