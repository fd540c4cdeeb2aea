"""TMI — Traceable Medical Image de-identification.

``tmi`` is the pure domain package: de-identification, crosswalk matching rules and the ports
(``typing.Protocol``) that adapters implement. It performs no network or database I/O and imports no
adapter (``adapters``, ``functions``, ``gateway``); ``tests/unit/test_architecture.py`` enforces that.
"""

__version__ = "0.1.0"
