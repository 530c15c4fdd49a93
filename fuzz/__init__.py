"""Property-based fuzzing of the parsers that take outside input (see properties.py)."""
