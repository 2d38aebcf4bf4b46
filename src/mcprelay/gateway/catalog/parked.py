"""Calls that outlive the agent's request: a 2026-07-28 agent asked for input by a 2025-era upstream.

A 2026-07-28 agent cannot be sent requests. When an upstream working on its call asks for input —
an elicitation, a sample, the agent's roots — or its user must first sign in, the agent's request
ends with an ``input_required`` result (multi round-trip requests) carrying the questions and a
``requestState``; the agent answers on a retry of the same request. The upstream's side cannot end
that way: a 2025-era upstream keeps its call open and waits for the answer. So the call runs in the
gateway's task group, "parked", and the retry (which names it by the sealed ``requestState``) hands
the answers over and waits on for the result — or for the next questions.

:class:`ParkedCalls` keeps the table, seals and checks the states (HMAC over the call's id, method
and target, with a key of this process: a state is only good here, for the same request), and
cancels a call nobody came back for within :data:`PARK_TTL`. :class:`Bridge` is the origin the
upstream's request runs under meanwhile: its questions wait for the agent, its progress and log
messages go to whichever of the agent's requests is waiting now.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import anyio
from anyio.abc import TaskGroup

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.catalog.origin import Origin
from mcprelay.gateway.upstreams.supervisor import Upstream, UpstreamRpcError

logger = logging.getLogger(__name__)

#: How long a parked call waits for the agent's retry before the upstream's call is cancelled.
PARK_TTL = 600.0
STATE_PREFIX = "mcprelay1."

#: What a parked call produces: the upstream's raw result and the protocol version it came under.
Outcome = tuple[dict[str, Any], str]


@dataclass
class _Ask:
    """One request for input a parked call waits on."""

    method: str
    params: dict[str, Any]
    done: anyio.Event = field(default_factory=anyio.Event)
    result: dict[str, Any] | None = None


class Bridge:
    """The origin a parked call's upstream request runs under: asks wait for the agent's retry."""

    def __init__(self, current: Origin) -> None:
        self.current = current
        self.changed = anyio.Event()
        self._asks: dict[str, _Ask] = {}
        self._keys = count(1)

    @property
    def version(self) -> str:
        return self.current.version

    @property
    def session(self) -> object:
        return self.current.session

    @property
    def capabilities(self) -> dict[str, Any]:
        return self.current.capabilities

    @property
    def log_level(self) -> str | None:
        return self.current.log_level

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.current.wants_progress:
            await self.current.progress(progress, total, message)

    async def ask_later(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Queue a question for the agent's next request and wait for its answer."""
        ask = _Ask(method, params)
        self._asks[f"input-{next(self._keys)}"] = ask
        self.changed.set()
        await ask.done.wait()
        assert ask.result is not None
        return ask.result

    def unanswered(self) -> dict[str, _Ask]:
        return {key: ask for key, ask in self._asks.items() if not ask.done.is_set()}

    def answer(self, responses: dict[str, Any]) -> None:
        for key, value in responses.items():
            ask = self._asks.get(key)
            if ask is not None and not ask.done.is_set() and isinstance(value, dict):
                ask.result = value
                ask.done.set()
                del self._asks[key]


@dataclass
class Parked:
    id: str
    method: str
    fingerprint: str
    bridge: Bridge
    upstream: Upstream
    what: str
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    finished: anyio.Event = field(default_factory=anyio.Event)
    result: Outcome | None = None
    error: BaseException | None = None
    deadline: float = 0.0


def fingerprint(method: str, params: dict[str, Any]) -> str:
    """What a retry must repeat: the method and its target (name or URI)."""
    target = params.get("name") if method != "resources/read" else params.get("uri")
    return f"{method}|{target}"


class ParkedCalls:
    """The gateway's parked calls; see the module docstring."""

    def __init__(self, task_group: Callable[[], TaskGroup]) -> None:
        self._task_group = task_group
        self._table: dict[str, Parked] = {}
        self._ids = count(1)
        self._key = secrets.token_bytes(32)

    def start(
        self, method: str, params: dict[str, Any], origin: Origin, upstream: Upstream, what: str,
        work: Callable[[Bridge], Awaitable[Outcome]],
    ) -> Parked:
        """Run ``work`` (``upstream``'s side of the call) in the gateway's task group."""
        parked = Parked(f"{next(self._ids)}.{secrets.token_hex(8)}", method, fingerprint(method, params),
                        Bridge(origin), upstream, what)

        async def run() -> None:
            try:
                with parked.scope:
                    parked.result = await work(parked.bridge)
                if parked.result is None:  # cancelled by _expire: nobody is waiting any more
                    parked.error = McpRelayError(ErrorType.UPSTREAM_ERROR, f"{what}: no answer to its input request")
            except Exception as exc:  # handed to whoever waits for the call
                parked.error = exc
            finally:
                parked.finished.set()
                parked.bridge.changed.set()

        self._task_group().start_soon(run)
        return parked

    async def wait(self, parked: Parked, origin: Origin, request_id: str) -> Outcome | dict[str, Any]:
        """For the agent's request ``origin``: the call's outcome, or the ``input_required`` result to give it.

        Raises what the call raised. A request cancelled while the upstream still works cancels the call.
        """
        parked.bridge.current = origin
        while True:
            if parked.finished.is_set():
                self._table.pop(parked.id, None)
                if parked.error is not None:
                    if isinstance(parked.error, McpRelayError | UpstreamRpcError):
                        raise parked.error
                    raise McpRelayError(
                        ErrorType.UPSTREAM_ERROR, f"{parked.what} on {parked.upstream.name} failed: {parked.error}",
                        server=parked.upstream.name, request_id=request_id,
                    )
                assert parked.result is not None
                return parked.result
            asks = parked.bridge.unanswered()
            if asks:
                self._table[parked.id] = parked
                parked.deadline = anyio.current_time() + PARK_TTL
                self._task_group().start_soon(self._expire, parked)
                return {
                    "resultType": "input_required",
                    "inputRequests": {key: {"method": ask.method, "params": ask.params} for key, ask in asks.items()},
                    "requestState": self._seal(parked),
                }
            parked.bridge.changed = anyio.Event()
            try:
                await parked.bridge.changed.wait()
            except anyio.get_cancelled_exc_class():
                # The agent gave up on its request while the upstream was still working on it: so does the
                # upstream (a call waiting for the agent's input is different: its request already ended).
                self._table.pop(parked.id, None)
                parked.scope.cancel()
                raise

    def resume(self, state: str, method: str, params: dict[str, Any], request_id: str) -> Parked:
        """The parked call a retry's ``requestState`` names, with the retry's answers handed over."""
        parked = self._unseal(state, method, params)
        if parked is None:
            raise McpRelayError(
                ErrorType.USAGE_ERROR,
                "this requestState is unknown, expired, or belongs to another request",
                suggestion="send the original request again, without inputResponses and requestState",
                request_id=request_id,
            )
        responses = params.get("inputResponses")
        if isinstance(responses, dict):
            parked.bridge.answer(responses)
        return parked

    async def _expire(self, parked: Parked) -> None:
        """Cancel a parked call whose agent never came back; a retry pushes the deadline, a finish ends it."""
        while parked.id in self._table and anyio.current_time() < parked.deadline:
            with anyio.move_on_after(max(0.0, parked.deadline - anyio.current_time())):
                await parked.finished.wait()
        if self._table.pop(parked.id, None) is not None:
            logger.info("%s: nobody answered an input request within %g s; cancelling", parked.what, PARK_TTL)
            parked.scope.cancel()

    def _mac(self, parked_id: str, print_: str) -> str:
        return hmac.new(self._key, f"{parked_id}|{print_}".encode(), hashlib.sha256).hexdigest()[:32]

    def _seal(self, parked: Parked) -> str:
        return f"{STATE_PREFIX}{parked.id}.{self._mac(parked.id, parked.fingerprint)}"

    def _unseal(self, state: str, method: str, params: dict[str, Any]) -> Parked | None:
        parked_id, _, mac = state[len(STATE_PREFIX):].rpartition(".")
        parked = self._table.get(parked_id)
        if parked is None or parked.method != method:
            return None
        return parked if hmac.compare_digest(self._mac(parked_id, fingerprint(method, params)), mac) else None
