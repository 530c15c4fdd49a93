"""The worker's entry point: ``python -I -S -u .../exporter/royalrender/vendor/launch.py --module ... ``.

The daemon runs this file as a script, in isolated mode without ``site``:
neither its working folder, ``PYTHONPATH``, the user's nor the system's
site-packages are on ``sys.path``, and no ``.pth`` file runs. So nothing
there can shadow the standard library or the vendor's module. The
``exporter`` package is then loaded from the folder this file is in, not
looked up on ``sys.path``: the worker's interpreter needs no copy of it
installed, and only the package's own files come from here (its
subpackages are found through the package's ``__path__``). ``worker.main``
then sets ``sys.path`` to the standard library and the module's folders.
"""

import importlib.util
import os
import sys


def _load_package(name: str, folder: str) -> None:
    """Imports the package in ``folder`` as ``name`` without putting anything on ``sys.path``."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    if spec is None or spec.loader is None:
        raise SystemExit("renderfarm-exporter worker: no package %s in %s" % (name, folder))
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)


def main() -> int:
    vendor = os.path.dirname(os.path.abspath(__file__))
    _load_package("exporter", os.path.dirname(os.path.dirname(vendor)))
    from exporter.royalrender.vendor import worker

    return worker.main()


if __name__ == "__main__":
    raise SystemExit(main())
