"""The test suite. Importing it (pytest does, before any test module) sets up trust in the
loopback fakes' TLS proxy."""

import os
import sys

from tests.fakes.tls_proxy import loopback_ca

# The Discord fakes sit behind a TLS proxy whose certificates come from a throwaway CA; the
# clients (in this process and in every `python -m bot` the tests start) trust it through
# SSL_CERT_FILE. aiohttp reads the CA bundle once, when it is imported, so this comes first.
assert "aiohttp" not in sys.modules, "SSL_CERT_FILE must be set before aiohttp is imported"
os.environ["SSL_CERT_FILE"] = str(loopback_ca().bundle)
