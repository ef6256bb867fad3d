"""The fault suite reuses the integration fixtures: the real broker over TCP, real worker processes.

``MEMSTREAM_FAULT_SOAK_S`` sets the length of the soak test (CI: 120 s; the long mode: 3600).
"""

from tests.integration.conftest import bootstrap, broker_kind, brokers, stack  # noqa: F401 - pytest fixtures
