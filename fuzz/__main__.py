"""``python -m fuzz [--examples N]``: the properties of tests/test_fuzz.py with many more examples.

Prints, per property, how many inputs were tried and how long it took;
a failure prints hypothesis' minimal failing example and exits 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import properties as prop

PROPERTIES = (
    ("cpu.acct: arbitrary bytes never raise", st.binary(max_size=4000), prop.cpu_acct_bytes_never_raise),
    ("cpu.acct: frames among junk counted exactly", prop.mixed_lines, prop.frames_among_junk_are_counted_exactly),
    ("label values: one-to-one and reversible", prop.names, prop.label_values_are_one_to_one),
    ("config: arbitrary text never raises", st.text(max_size=2000), prop.config_text_never_raises),
    ("config: wrongly typed documents rejected", prop.documents, prop.config_structure_never_raises),
    ("web config: any document rejected or loaded", prop.web_documents, prop.web_config_never_raises),
)


def run(name: str, strategy, check, examples: int) -> int:
    tried = [0]

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def property_(value):
        tried[0] += 1
        check(value)

    started = time.monotonic()
    property_()
    print("%-48s %9d inputs %8.1f s" % (name, tried[0], time.monotonic() - started), flush=True)
    return tried[0]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000, help="examples per property (default %(default)s)")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # malformed-line warnings by the thousand are the point, not news
    total = sum(run(name, strategy, check, args.examples) for name, strategy, check in PROPERTIES)
    print("%-48s %9d inputs" % ("total", total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
