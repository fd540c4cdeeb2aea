"""Versioned de-identification profiles (data files; see docs/deid.md)."""
