"""The one path every forwarded request takes: route, send as JSON, relay what comes back, shape, record.

``tools/call``, ``prompts/get``, ``resources/read`` and ``completion/complete`` from any agent — served
by the SDK's server or by a fast path, on stdio or HTTP, in either protocol era — come through here.
Each is routed to its upstream (``router.py``), sent as JSON on that upstream's session, and its result
is rewritten into the upstream's namespace (``rewrite.py``) and shaped for the agent's protocol
version (``eras.py``). A tool call is recorded in the activity log. The gateway's own failures (not
connected, no login, a result no client could read) become an ``isError`` result carrying the
structured error; an upstream's JSON-RPC error is passed on as that error.

What the upstream sends *about* a request comes back through :meth:`Forwarder.on_input` and
:meth:`Forwarder.on_log`, with the request's :class:`~mcprelay.gateway.catalog.origin.Origin`:

* a request for input (elicitation, sampling, roots) goes to the agent whose request caused it, if
  its client declared the capability — otherwise the upstream gets the protocol's error at once
  (roots and sampling: ``-32601``; an elicitation mode not declared: ``-32602``);
* a handshake-era agent is asked directly; a 2026-07-28 agent cannot be sent requests, so its
  request ends in an ``input_required`` result (multi round-trip requests) while the upstream's call
  stays open in the gateway ("parked", see ``parked.py``); the agent's retry with ``inputResponses``
  and the ``requestState`` minted there answers the upstream and picks the call up again;
* a 2026-07-28 upstream's own ``input_required`` result is passed to a 2026-07-28 agent as it is
  (its retry is forwarded verbatim) and answered for a handshake-era agent by asking it, round by
  round, as the SDK's client would;
* log messages go to the request's agent if it asked for them (a 2026-07-28 request must have
  carried a log level), or — belonging to no request — to every handshake-era agent session;
* a request to a server that needs a login, from an agent whose client can send its user to a URL,
  brings the sign-in page to that user (URL-mode elicitation; for a 2026-07-28 agent in an
  ``input_required`` round) and goes through once the login is done (``login_hook``, set by the
  control plane).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp_types import SERVER_INFO_META_KEY

from mcprelay import metrics
from mcprelay.activity import ActivityRecord
from mcprelay.errors import ErrorType, McpRelayError, login_required, new_correlation_id
from mcprelay.gateway.catalog.eras import TranslationError, for_client, is_modern, tool_result_problem
from mcprelay.gateway.catalog.names import Namespace, split_name
from mcprelay.gateway.catalog.origin import Origin, level_admits
from mcprelay.gateway.catalog.parked import STATE_PREFIX, Bridge, Parked, ParkedCalls
from mcprelay.gateway.catalog.rewrite import result_to_agent, sampling_params_to_agent
from mcprelay.gateway.upstreams.supervisor import UpstreamRpcError

if TYPE_CHECKING:
    from mcprelay.gateway.catalog.router import Gateway
    from mcprelay.gateway.upstreams.supervisor import Upstream

logger = logging.getLogger(__name__)

#: The methods whose results may be ``input_required`` (2026-07-28 multi round-trip requests).
MRTR_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
#: Rounds of ``input_required`` answered for a handshake-era agent before the call is given up.
MAX_INPUT_ROUNDS = 10

#: Asks every connected handshake-era agent that offers roots for them (set by the serving layer).
RootsSource = Callable[[], Awaitable[list[dict[str, Any]] | None]]
#: Delivers a log message that belongs to no request to every handshake-era agent session.
LogBroadcast = Callable[[dict[str, Any]], Awaitable[None]]
#: Tells one agent connection (an origin's ``session``) that a URL-mode elicitation it was shown completed.
ElicitationDone = Callable[[object, str], Coroutine[Any, Any, None]]
#: Starts (or joins) a login for a server whose page an agent's client will open; set by the control plane.
LoginHook = Callable[[str], Awaitable["LoginTicket"]]


@dataclass(frozen=True)
class LoginTicket:
    """A login under way for an agent to finish: the page to send its user to, and how to wait for it."""

    url: str | None  # None: nothing to open (a machine grant)
    elicitation_id: str
    done: Callable[[], Awaitable[McpRelayError | None]]
    timeout: float


#: URL-mode elicitations remembered for their completion notice at most (oldest forgotten first).
MAX_URL_ELICITATIONS = 1000


class Forwarder:
    """Forwards requests for a :class:`~mcprelay.gateway.catalog.router.Gateway`; see the module docstring."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.roots_source: RootsSource | None = None
        self.broadcast_log: LogBroadcast | None = None
        self.elicitation_done: ElicitationDone | None = None
        self.login_hook: LoginHook | None = None
        self._url_elicitations: dict[tuple[str, str], object] = {}  # (upstream, elicitation id) → agent session
        self._parked = ParkedCalls(lambda: gateway.task_group)

    # ------------------------------------------------------------------ tools

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None, origin: Origin, *, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Forward ``tools/call``; the result in ``origin``'s protocol version. Every failure of the
        gateway's is an ``isError`` result; the upstream's own JSON-RPC error is raised as ``MCPError``.

        ``extra`` carries the retry fields of a multi round-trip request (``inputResponses``,
        ``requestState``).
        """
        call, result = await self._tool(name, arguments, origin, extra)
        self._record(call, len(json.dumps(result, separators=(",", ":"), ensure_ascii=False, default=str)))
        return result

    async def call_tool_text(
        self, name: str, arguments: dict[str, Any] | None, origin: Origin, *, server_info: dict[str, Any] | None
    ) -> str:
        """:meth:`call_tool` as the JSON text of the result, for a wire the gateway writes itself.

        ``server_info`` (2026-era clients) is the downstream server's ``serverInfo`` stamp for the
        result. The text is encoded once: it is both the response and the size the activity log keeps.
        """
        call, result = await self._tool(name, arguments, origin, None)
        if server_info is not None:
            meta = result.get("_meta")
            result["_meta"] = {**(meta if isinstance(meta, dict) else {}), SERVER_INFO_META_KEY: server_info}
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False, default=str)
        self._record(call, len(text))
        return text

    async def _tool(
        self, name: str, arguments: dict[str, Any] | None, origin: Origin, extra: dict[str, Any] | None
    ) -> tuple[_Call, dict[str, Any]]:
        request_id = new_correlation_id()
        encoded_arguments = json.dumps(arguments or {}, default=str)  # once: its size, and its text if kept
        call = _Call(request_id, (split_name(name) or ("",))[0], name, time.time(), time.monotonic(),
                     encoded_arguments)
        try:
            upstream, call.tool = await self._route(self.gateway.route_tool, name, request_id)
            call.server = upstream.name
            params: dict[str, Any] = {"name": call.tool}
            if arguments is not None:
                params["arguments"] = arguments
            if extra:
                params.update(extra)
            result = await self._exchange("tools/call", upstream, params, origin, request_id, f"tool {call.tool}")
            call.status = _status(result)
        except McpRelayError as exc:
            call.fail(exc)
            result = call.error_result(origin.version)
        except UpstreamRpcError as exc:  # the upstream's own protocol error: the agent gets exactly that
            call.status, call.error_type = "error", str(ErrorType.UPSTREAM_ERROR)
            self._record(call, 0)
            raise MCPError.from_error_data(exc.error) from None
        return call, result

    # ------------------------------------------------------------------ prompts, resources, completion

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None, origin: Origin, *, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        request_id = new_correlation_id()
        upstream, prompt = await self._route(self.gateway.route_prompt, name, request_id)
        params: dict[str, Any] = {"name": prompt}
        if arguments is not None:
            params["arguments"] = arguments
        if extra:
            params.update(extra)
        return await self._exchange("prompts/get", upstream, params, origin, request_id, f"prompt {prompt}")

    async def read_resource(self, uri: str, origin: Origin, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = new_correlation_id()
        upstream, original = await self._route(self.gateway.route_uri, uri, request_id)
        params: dict[str, Any] = {"uri": original, **(extra or {})}
        return await self._exchange("resources/read", upstream, params, origin, request_id, f"resource {original}")

    async def complete(self, params: dict[str, Any], origin: Origin) -> dict[str, Any]:
        """``completion/complete``, routed by its reference: a prompt's exposed name or a template's URI."""
        request_id = new_correlation_id()
        ref = params.get("ref")
        if not isinstance(ref, dict):
            raise McpRelayError(ErrorType.USAGE_ERROR, "completion/complete needs a ref", request_id=request_id)
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            upstream, own = await self._route(self.gateway.route_prompt, ref["name"], request_id)
            ref = {**ref, "name": own}
        elif ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            upstream, own = await self._route(self.gateway.route_uri, ref["uri"], request_id)
            ref = {**ref, "uri": own}
        else:
            raise McpRelayError(
                ErrorType.USAGE_ERROR, f"completion/complete: unknown reference {ref.get('type')!r}",
                suggestion="use ref/prompt with a prompt's name or ref/resource with a template's URI",
                request_id=request_id,
            )
        return await self._exchange(
            "completion/complete", upstream, {**params, "ref": ref}, origin, request_id, "completion"
        )

    async def subscribe(self, uri: str, subscribe: bool) -> None:
        """Forward a (un)subscription to the upstream the URI names; a URI naming none never fires."""
        request_id = new_correlation_id()
        try:
            upstream, original = self.gateway.route_uri(uri, request_id)
        except McpRelayError:
            return
        await upstream.subscribe_resource(original, subscribe, request_id=request_id)

    # ------------------------------------------------------------------ the one path

    async def _route(
        self, route: Callable[[str, str], tuple[Upstream, str]], name: str, request_id: str
    ) -> tuple[Upstream, str]:
        """Route ``name``; a name not (yet) in the catalogue waits for the gateway to settle first."""
        try:
            return route(name, request_id)
        except McpRelayError:
            await self.gateway.settle()
            return route(name, request_id)

    async def _exchange(
        self, method: str, upstream: Upstream, params: dict[str, Any], origin: Origin, request_id: str, what: str
    ) -> dict[str, Any]:
        """Send, relay input rounds, and return the result shaped for ``origin``."""
        state = params.get("requestState")
        if isinstance(state, str) and state.startswith(STATE_PREFIX):
            return await self._resume(state, method, params, origin, request_id)
        if upstream.state == "login_required" and self._login_comes_to(origin):
            if is_modern(origin.version):  # the URL reaches it as an input_required round
                return await self._park(method, upstream, params, origin, request_id, what, login_first=True)
            raw, version = await self._login_first(upstream, method, params, origin, origin, request_id, what)
        elif (
            method in MRTR_METHODS
            and is_modern(origin.version)
            and not is_modern(upstream.protocol_version)
        ):
            return await self._park(method, upstream, params, origin, request_id, what)
        else:
            try:
                raw, version = await self._send(upstream, method, params, origin, origin, request_id, what)
            except McpRelayError as exc:
                # The grant ran out while this request was on its way: the login comes to the agent's user
                # now, if its client can take it there, rather than on its next call.
                if not self._login_comes_to(origin, exc):
                    raise
                if is_modern(origin.version):
                    return await self._park(method, upstream, params, origin, request_id, what, login_first=True)
                raw, version = await self._login_first(upstream, method, params, origin, origin, request_id, what)
        rounds = 0
        while raw.get("resultType") == "input_required" and not is_modern(origin.version):
            rounds += 1
            if rounds > MAX_INPUT_ROUNDS:
                raise McpRelayError(
                    ErrorType.UPSTREAM_ERROR,
                    f"{what} on {upstream.name} asked for input more than {MAX_INPUT_ROUNDS} times",
                    suggestion=f"check the server {upstream.name}", server=upstream.name, request_id=request_id,
                )
            responses = await self._answer_rounds(upstream, origin, raw.get("inputRequests"), request_id)
            params = {k: v for k, v in params.items() if k not in ("inputResponses", "requestState")}
            if responses:
                params["inputResponses"] = responses
            if isinstance(raw.get("requestState"), str):
                params["requestState"] = raw["requestState"]
            raw, version = await self._send(upstream, method, params, origin, origin, request_id, what)
        return self._shape(method, upstream, raw, version, origin, request_id, what)

    async def _send(
        self, upstream: Upstream, method: str, params: dict[str, Any], origin: Origin, relay: object,
        request_id: str, what: str,
    ) -> tuple[dict[str, Any], str]:
        return await upstream.request(
            method, params, request_id=request_id, what=what, origin=relay, group=origin.session,
            progress=origin.progress if origin.wants_progress else None,
            capabilities=origin.capabilities, log_level=origin.log_level,
        )

    def _shape(
        self, method: str, upstream: Upstream, raw: dict[str, Any], version: str, origin: Origin, request_id: str,
        what: str,
    ) -> dict[str, Any]:
        ns = self.gateway.namespace(upstream)
        if raw.get("resultType") == "input_required":  # for a 2026-07-28 agent, as the upstream sent it
            requests = raw.get("inputRequests")
            for request in requests.values() if isinstance(requests, dict) else ():
                if isinstance(request, dict) and isinstance(request.get("method"), str):
                    try:
                        _check_capability(origin.capabilities, request["method"], request.get("params") or {})
                    except MCPError as exc:  # the upstream must not ask for what the client did not declare
                        raise McpRelayError(
                            ErrorType.UPSTREAM_ERROR,
                            f"{what} on {upstream.name} asked for input ({request['method']}) although {exc.message}",
                            suggestion=f"report it to the maintainers of {upstream.name}'s MCP server: a server "
                            "must only ask for input the client declared",
                            server=upstream.name, request_id=request_id,
                        ) from None
            return _input_required_to_agent(raw, ns)
        if method == "tools/call" and (problem := tool_result_problem(raw, modern=is_modern(version))):
            raise _malformed(upstream, what, request_id, problem)
        try:
            return for_client(method, result_to_agent(method, raw, ns), upstream_version=version,
                              client_version=origin.version)
        except TranslationError as exc:
            if exc.upstream_at_fault:
                raise _malformed(upstream, what, request_id, str(exc)) from None
            raise McpRelayError(
                ErrorType.UPSTREAM_ERROR, f"{what} on {upstream.name}: the result is {exc}",
                suggestion="report it to mcprelay (the upstream's result was valid for its own protocol version)",
                server=upstream.name, request_id=request_id,
            ) from None

    async def _answer_rounds(
        self, upstream: Upstream, origin: Origin, requests: Any, request_id: str
    ) -> dict[str, Any]:
        """Answer a 2026-07-28 upstream's ``inputRequests`` by asking a handshake-era agent, concurrently."""
        if not isinstance(requests, dict):
            return {}
        responses: dict[str, Any] = {}
        refused: list[McpRelayError] = []

        async def answer(key: str, request: Any, scope: anyio.CancelScope) -> None:
            if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                refused.append(McpRelayError(
                    ErrorType.UPSTREAM_ERROR, f"{upstream.name} sent an input request {key!r} without a method",
                    server=upstream.name, request_id=request_id,
                ))
                scope.cancel()
                return
            params: dict[str, Any] = request["params"] if isinstance(request.get("params"), dict) else {}
            try:
                responses[key] = await self.on_input(upstream, origin, request["method"], params)
            except MCPError as exc:  # one refusal ends the round: its siblings are not worth waiting for
                refused.append(McpRelayError(
                    ErrorType.UPSTREAM_ERROR,
                    f"{upstream.name} asked for input ({request['method']}) the agent could not give: {exc.message}",
                    server=upstream.name, request_id=request_id,
                ))
                scope.cancel()

        async with anyio.create_task_group() as tg:
            for key, request in requests.items():
                tg.start_soon(answer, key, request, tg.cancel_scope)
        if refused:
            raise refused[0]
        return responses

    # ------------------------------------------------------------------ logins an agent's user finishes

    def _login_comes_to(self, origin: Origin, error: McpRelayError | None = None) -> bool:
        """Whether a login (needed, or ``error`` says so) can be brought to this agent's user."""
        if error is not None and error.error_type != ErrorType.LOGIN_REQUIRED:
            return False
        return self.login_hook is not None and _url_elicitation(origin)

    async def _login_first(
        self, upstream: Upstream, method: str, params: dict[str, Any], origin: Origin, relay: object,
        request_id: str, what: str,
    ) -> tuple[dict[str, Any], str]:
        """Send the agent's user to the upstream's login page (URL-mode elicitation), wait for the login,
        then forward the request: the agent's call succeeds instead of failing with ``login_required``."""
        assert self.login_hook is not None
        ticket = await self.login_hook(upstream.name)
        if ticket.url is not None:
            ask: dict[str, Any] = {
                "mode": "url",
                "message": f"{upstream.name} needs you to sign in before its tools can be used. "
                           "Open the page to sign in; mcprelay carries on when you are done.",
                "url": ticket.url,
            }
            if not is_modern(origin.version):
                ask["elicitationId"] = ticket.elicitation_id  # 2025-11-25: completion is announced by id
            answer = await (relay.ask_later("elicitation/create", ask) if isinstance(relay, Bridge)
                            else origin.ask("elicitation/create", ask))
            if answer.get("action") != "accept":
                raise login_required(
                    upstream.name,
                    f"{upstream.name} requires a login, and the sign-in page was {answer.get('action') or 'refused'}",
                    request_id=request_id,
                )
        with anyio.fail_after(ticket.timeout + 5):
            error = await ticket.done()
        if error is not None:
            raise error
        if not is_modern(origin.version) and ticket.url is not None and self.elicitation_done is not None:
            await self.elicitation_done(origin.session, ticket.elicitation_id)
        if not await upstream.wait_until_ready(self.gateway.env.wait_for_connect):
            raise upstream.unavailable(request_id)
        return await self._send(upstream, method, params, origin, relay, request_id, what)

    # ------------------------------------------------------------------ parked calls (2026-07-28 agents)

    async def _park(
        self, method: str, upstream: Upstream, params: dict[str, Any], origin: Origin, request_id: str, what: str,
        *, login_first: bool = False,
    ) -> dict[str, Any]:
        """Run the call parked (``parked.py``), so it survives an ``input_required`` answer to the agent
        (``login_first``: after sending the agent's user to the upstream's login page)."""

        async def work(bridge: Bridge) -> tuple[dict[str, Any], str]:
            if login_first:
                return await self._login_first(upstream, method, params, origin, bridge, request_id, what)
            try:
                return await upstream.request(
                    method, params, request_id=request_id, what=what, origin=bridge, group=origin.session,
                    # Progress goes to whichever request of the agent's is waiting now: a retry has a token of
                    # its own, and the first request's is dead once it got input_required.
                    progress=bridge.progress if origin.wants_progress else None,
                    capabilities=origin.capabilities, log_level=origin.log_level,
                )
            except McpRelayError as exc:
                if not self._login_comes_to(origin, exc):
                    raise
                return await self._login_first(upstream, method, params, origin, bridge, request_id, what)

        return await self._await_parked(self._parked.start(method, params, origin, upstream, what, work), origin,
                                        request_id)

    async def _await_parked(self, parked: Parked, origin: Origin, request_id: str) -> dict[str, Any]:
        outcome = await self._parked.wait(parked, origin, request_id)
        if isinstance(outcome, dict):
            return outcome  # the agent's input_required round
        raw, version = outcome
        return self._shape(parked.method, parked.upstream, raw, version, origin, request_id, parked.what)

    async def _resume(
        self, state: str, method: str, params: dict[str, Any], origin: Origin, request_id: str
    ) -> dict[str, Any]:
        return await self._await_parked(self._parked.resume(state, method, params, request_id), origin, request_id)

    # ------------------------------------------------------------------ what upstreams send on their own

    async def on_input(
        self, upstream: Upstream, origin: object | None, method: str, params: dict[str, Any], certain: bool = True
    ) -> dict[str, Any]:
        """Answer an upstream's request for input; raises ``MCPError`` with the error the upstream gets.

        ``certain`` is false when ``origin`` is only the request that was in flight (stdio, SSE).
        """
        if method == "roots/list" and not certain and origin is not None and not self._can_ask_for_roots(origin):
            # Servers ask for roots at start-up and when told they changed as often as during a call. When
            # nothing ties the question to the call in flight and its agent cannot simply be asked on the
            # call's own channel, the connected agents' roots answer it; the call's agent (in a 2026-07-28
            # input_required round) only when no connected agent offers roots.
            try:
                return await self._everyones_roots(upstream)
            except MCPError as exc:
                if exc.code != types.METHOD_NOT_FOUND:
                    raise
        if origin is None:
            if method == "roots/list":
                return await self._everyones_roots(upstream)
            raise MCPError(
                types.METHOD_NOT_FOUND,
                f"{method} arrived while no agent request to {upstream.name} was in progress: there is no one to ask",
            )
        target = origin if isinstance(origin, Bridge) else cast(Origin, origin)
        _check_capability(target.capabilities, method, params)
        if method == "sampling/createMessage":
            params = sampling_params_to_agent(params, self.gateway.namespace(upstream))
        if isinstance(target, Bridge):
            return await target.ask_later(method, params)
        if not target.can_ask:
            raise MCPError(types.INTERNAL_ERROR, f"the agent's request cannot carry {method} now")
        elicitation_id = params.get("elicitationId") if method == "elicitation/create" else None
        if isinstance(elicitation_id, str):
            self._url_elicitations[(upstream.name, elicitation_id)] = target.session
            while len(self._url_elicitations) > MAX_URL_ELICITATIONS:
                self._url_elicitations.pop(next(iter(self._url_elicitations)))
        return await target.ask(method, params)

    @staticmethod
    def _can_ask_for_roots(origin: object) -> bool:
        target = cast(Origin, origin)
        return not isinstance(origin, Bridge) and target.can_ask and "roots" in target.capabilities

    def on_elicitation_complete(self, upstream: Upstream, elicitation_id: str) -> None:
        """Pass a URL-mode elicitation's completion to the agent connection that was shown it."""
        session = self._url_elicitations.pop((upstream.name, elicitation_id), None)
        if session is not None and self.elicitation_done is not None:
            try:
                self.gateway.task_group.start_soon(self.elicitation_done, session, elicitation_id)
            except McpRelayError:
                pass

    async def on_log(self, upstream: Upstream, origin: object | None, params: dict[str, Any]) -> None:
        """Relay one ``notifications/message``, its ``logger`` naming the server."""
        own = params.get("logger")
        params = {**params, "logger": f"{upstream.name}/{own}" if isinstance(own, str) and own else upstream.name}
        level = params.get("level")
        if origin is None:
            if self.broadcast_log is not None:
                await self.broadcast_log(params)
            return
        target = origin.current if isinstance(origin, Bridge) else cast(Origin, origin)
        wanted = target.log_level
        if is_modern(target.version) and wanted is None:
            return  # a 2026-07-28 request that did not ask for log messages must not get any
        if isinstance(level, str) and not level_admits(wanted, level):
            return
        await target.log(params)

    async def _everyones_roots(self, upstream: Upstream) -> dict[str, Any]:
        roots = await self.roots_source() if self.roots_source is not None else None
        if roots is None:
            raise MCPError(types.METHOD_NOT_FOUND, "no agent connected to mcprelay offers roots")
        return {"roots": roots}

    # ------------------------------------------------------------------ the activity log

    def _record(self, call: _Call, response_bytes: int) -> None:
        activity = self.gateway.activity
        elapsed = time.monotonic() - call.clock
        metrics.tool_call(call.server, call.status, elapsed)
        try:
            activity.record(
                ActivityRecord(
                    request_id=call.request_id, correlation_id=call.correlation_id, server=call.server,
                    tool=call.tool, started_at=call.started,
                    duration_ms=round(elapsed * 1000, 2), status=call.status,
                    error_type=call.error_type, request_bytes=len(call.encoded_arguments),
                    response_bytes=response_bytes,
                    arguments=call.encoded_arguments if activity.record_arguments else None,
                )
            )
        except Exception:  # the activity log is a record, never a reason for a call to fail
            logger.exception("recording activity failed")


# ---------------------------------------------------------------------- helpers


def _url_elicitation(origin: Origin) -> bool:
    """Whether the agent's client can send its user to a URL (URL-mode elicitation, 2025-11-25 on)."""
    declared = origin.capabilities.get("elicitation")
    return isinstance(declared, dict) and "url" in declared and (origin.can_ask or is_modern(origin.version))


def _check_capability(capabilities: dict[str, Any], method: str, params: dict[str, Any]) -> None:
    """Refuse, with the protocol's error, a request for input the agent's client did not declare."""
    if method == "sampling/createMessage" and capabilities.get("sampling") is None:
        raise MCPError(types.METHOD_NOT_FOUND, "the agent's client does not support sampling")
    if method == "roots/list" and capabilities.get("roots") is None:
        raise MCPError(types.METHOD_NOT_FOUND, "the agent's client does not support roots")
    if method == "elicitation/create":
        declared = capabilities.get("elicitation")
        mode = params.get("mode") or "form"
        if not isinstance(declared, dict):
            raise MCPError(types.METHOD_NOT_FOUND, "the agent's client does not support elicitation")
        # An empty elicitation capability means form mode (2025-06-18 clients declared nothing more).
        if mode not in declared and not (mode == "form" and not declared):
            raise MCPError(types.INVALID_PARAMS, f"the agent's client does not support {mode} elicitation")


def _input_required_to_agent(raw: dict[str, Any], ns: Namespace) -> dict[str, Any]:
    requests = raw.get("inputRequests")
    if not isinstance(requests, dict):
        return raw
    rewritten = {}
    for key, request in requests.items():
        if isinstance(request, dict) and request.get("method") == "sampling/createMessage" and isinstance(
            request.get("params"), dict
        ):
            request = {**request, "params": sampling_params_to_agent(request["params"], ns)}
        rewritten[key] = request
    return {**raw, "inputRequests": rewritten}


def _status(result: dict[str, Any]) -> str:
    if result.get("resultType") == "input_required":
        return "input_required"
    return "tool_error" if result.get("isError") else "ok"


def _malformed(upstream: Upstream, what: str, request_id: str, problem: str) -> McpRelayError:
    return McpRelayError(
        ErrorType.UPSTREAM_ERROR,
        f"{what} on {upstream.name} returned a result that {problem}"
        if problem.startswith("does not match") else
        f"{what} on {upstream.name} returned a result that does not match the MCP schema: {problem[:300]}",
        suggestion=f"report it to the maintainers of {upstream.name}'s MCP server",
        server=upstream.name, request_id=request_id,
    )


@dataclass
class _Call:
    """One forwarded tool call on its way through: what the activity log records."""

    request_id: str
    server: str
    tool: str
    started: float
    clock: float
    encoded_arguments: str
    status: str = "ok"
    error_type: str | None = None
    correlation_id: str | None = None
    error: McpRelayError | None = None

    def fail(self, error: McpRelayError) -> None:
        error.with_context(request_id=self.request_id)
        self.error = error
        self.server = self.server or (error.server or "")
        self.status, self.error_type, self.correlation_id = "error", str(error.error_type), error.correlation_id

    def error_result(self, version: str) -> dict[str, Any]:
        assert self.error is not None
        return error_result(self.error, version)


def error_result(error: McpRelayError, version: str | None = None) -> dict[str, Any]:
    """A tool result the agent can read: ``isError`` with the structured error as JSON text."""
    result: dict[str, Any] = {
        "content": [{"type": "text", "text": json.dumps(error.to_dict())}], "isError": True,
    }
    return {"resultType": "complete", **result} if is_modern(version) else result
