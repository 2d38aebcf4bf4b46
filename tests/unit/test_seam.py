"""The seam to other libraries' private internals holds for the installed versions (see mcprelay/seam.py).

When a release of mcp, keyring or typer moves an internal mcprelay relies on, this fails with the
library, its version and the attribute, instead of a fast path quietly going away.
"""

from __future__ import annotations

from mcprelay import seam


def test_every_internal_the_seam_uses_is_where_it_expects() -> None:
    assert seam.check() == []


def test_a_missing_internal_names_the_library_and_the_attribute() -> None:
    class Session:  # an object without the SDK session's internals
        pass

    try:
        seam.session_wire(Session())
    except seam.SeamBroken as exc:
        assert exc.library == "mcp"
        assert "ClientSession._stamp" in str(exc)
        assert "seam.py" in str(exc)
    else:
        raise AssertionError("session_wire accepted an object without the SDK's internals")
