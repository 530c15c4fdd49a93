"""The HTTP side: the server, its TLS and basic-auth settings, and the status page.

It serves what the core has rendered (``exporter.exposition``) and reads the
core's status types (``exporter.status``); it never imports a source.
"""
