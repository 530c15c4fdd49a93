"""Royal Render: statistics read through the vendor's module, which runs only in a worker process.

- ``source``: the config section and the readers (the daemon's entry point);
- ``kinds`` and one module per file kind: plain data to metric families;
- ``reader``: which files to read and when, per-file backoff, the boundary's own metrics;
- ``client``: the daemon's side of the worker protocol;
- ``vendor``: the worker's side (standard library only);
- ``timezone``: the zone RR's local times are in.

The stand-in module and the RR simulator live in ``exporter.simulation``.
"""
