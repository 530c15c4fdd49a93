"""Rush: ``cpu.acct`` accounting logs, tailed by the exporter itself.

- ``source``: the source (config section, readers, history for backfill);
- ``config``: the section's schema;
- ``records``: one line parsed; ``cpu_acct``: the reader; ``history``: the replay for backfill.
"""
