"""mcprelay's fixture MCP server: every server feature, in both protocol eras, on both wires.

``python -m mcprelay.testing.fixture_server [--stdio | --http HOST:PORT]``

It implements what the official MCP conformance suite's server scenarios call (``test_*`` tools,
``test://`` resources and templates, ``test_*`` prompts, completion, logging, progress, sampling,
elicitation and roots, ``input_required`` rounds with sealed ``requestState``, subscriptions and
``subscriptions/listen``), for 2025-11-25 handshake sessions and 2026-07-28 stateless requests alike.
``.ci/conformance-server.sh`` runs those scenarios against it directly and through the gateway; the
gateway's own tests use it as an upstream whose every behaviour is known.

Modules: :mod:`.server` (the SDK low-level server and its handlers), :mod:`.tools`,
:mod:`.catalog` (resources, prompts, completion), :mod:`.asking` (client input in both eras),
:mod:`.state` (log levels, subscriptions, the listen bus), :mod:`.transports` (stdio, HTTP),
:mod:`.content` (payloads).
"""

from mcprelay.testing.fixture_server.server import FixtureServer, build_server
from mcprelay.testing.fixture_server.transports import http_app

__all__ = ["FixtureServer", "build_server", "http_app"]
