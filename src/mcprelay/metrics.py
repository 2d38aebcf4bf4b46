"""Prometheus metrics of a gateway replica, as plain functions the rest of the code calls.

Off until :func:`enable` (``serve --listen`` enables them for ``GET /metrics``): every function is
then a no-op, so a CLI command neither imports ``prometheus_client`` (about 65 ms) nor keeps
counters nobody reads. The metrics, all prefixed ``mcprelay_``:

- ``refreshes_total{outcome}`` — renewals by outcome: ``refreshed`` (a token request was sent and
  its answer stored), ``adopted`` (a sibling process or replica had already rotated), or the error type;
- ``refresh_seconds`` — how long a renewal took, lock wait included;
- ``lease_wait_seconds{lock}`` — how long the grant lock (``file`` or ``redis``) was waited for;
- ``tool_call_seconds{upstream,status}`` — tool calls through the gateway;
- ``upstream_state{upstream,state}`` — 1 for each upstream's current state, 0 for the others;
- ``logins_required_total{upstream}`` — how often an upstream went to ``login_required``.
"""

from __future__ import annotations

from typing import Any

_STATES = ("connecting", "ready", "login_required", "error", "disabled")


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.refreshes = Counter("mcprelay_refreshes", "Token renewals by outcome", ["outcome"],
                                 registry=self.registry)
        self.refresh_seconds = Histogram("mcprelay_refresh_seconds", "Duration of a token renewal",
                                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                         registry=self.registry)
        self.lease_wait = Histogram("mcprelay_lease_wait_seconds", "Wait for the grant lock", ["lock"],
                                    buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
                                    registry=self.registry)
        self.tool_calls = Histogram("mcprelay_tool_call_seconds", "Tool calls through the gateway",
                                    ["upstream", "status"],
                                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                             5, 10, 30, 120),
                                    registry=self.registry)
        self.upstream_state = Gauge("mcprelay_upstream_state", "1 for the upstream's current state",
                                    ["upstream", "state"], registry=self.registry)
        self.logins_required = Counter("mcprelay_logins_required", "Upstreams that went to login_required",
                                       ["upstream"], registry=self.registry)


_metrics: _Metrics | None = None


def enable() -> None:
    """Start collecting (idempotent)."""
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()


def refresh(outcome: str, seconds: float) -> None:
    if _metrics is not None:
        _metrics.refreshes.labels(outcome).inc()
        _metrics.refresh_seconds.observe(seconds)


def lease_wait(lock: str, seconds: float) -> None:
    if _metrics is not None:
        _metrics.lease_wait.labels(lock).observe(seconds)


def tool_call(upstream: str, status: str, seconds: float) -> None:
    if _metrics is not None:
        _metrics.tool_calls.labels(upstream or "-", status).observe(seconds)


def upstream_state(upstream: str, state: str) -> None:
    if _metrics is None:
        return
    for name in _STATES:
        _metrics.upstream_state.labels(upstream, name).set(1 if name == state else 0)
    if state == "login_required":
        _metrics.logins_required.labels(upstream).inc()


def render() -> tuple[bytes, str]:
    """The exposition text and its content type (empty when metrics are off)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    if _metrics is None:
        return b"", CONTENT_TYPE_LATEST
    data: Any = generate_latest(_metrics.registry)
    return bytes(data), CONTENT_TYPE_LATEST
