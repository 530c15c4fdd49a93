"""Property-based tests of the parsers that take outside input; ``python -m fuzz`` runs them longer."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import properties as prop

pytestmark = pytest.mark.inprocess

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.binary(max_size=2000))
def test_cpu_acct_bytes_never_raise(content):
    prop.cpu_acct_bytes_never_raise(content)


@SETTINGS
@given(prop.mixed_lines)
def test_frames_among_junk_are_counted_exactly(lines):
    prop.frames_among_junk_are_counted_exactly(lines)


@SETTINGS
@given(prop.names)
def test_label_values_are_one_to_one(names):
    prop.label_values_are_one_to_one(names)


@SETTINGS
@given(st.text(max_size=500))
def test_config_text_never_raises(text):
    prop.config_text_never_raises(text)


@SETTINGS
@given(prop.documents)
def test_config_structure_never_raises(document):
    prop.config_structure_never_raises(document)


@SETTINGS
@given(prop.web_documents)
def test_web_config_never_raises(document):
    prop.web_config_never_raises(document)
