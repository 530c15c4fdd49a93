"""renderfarm-exporter: render farm statistics files as Prometheus metrics.

Data flows one way: watcher -> source reader -> immutable snapshot ->
metric families -> cached exposition -> HTTP.
"""

__version__ = "0.1.0"
