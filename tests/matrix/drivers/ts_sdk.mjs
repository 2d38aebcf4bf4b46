// Matrix driver: the official TypeScript SDK client (npm @modelcontextprotocol/sdk 1.32.2, pinned by
// .ci/matrix.sh into .ci/npm/sdk-1.32.2/), which speaks 2025-11-25 with the initialize handshake.
//
// The same feature sequence as tests/matrix/drivers/common.py, in the same order, with the same checks
// and the same wording of the details: keep the two in step. One JSON line per decided feature is
// appended to the plan's results file as soon as it is decided.
//
// Usage: node tests/matrix/drivers/ts_sdk.mjs PLAN.json

import { appendFileSync, readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const sdk = (path) => import(pathToFileURL(`${plan.ts_sdk_dir}/dist/esm/${path}`).href);
const { Client } = await sdk("client/index.js");
const { StdioClientTransport } = await sdk("client/stdio.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
const types = await sdk("types.js");

const decided = new Set();
const write = (record) => appendFileSync(plan.results, JSON.stringify(record) + "\n");
const feature = (name, status, detail) => {
  decided.add(name);
  write({ feature: name, status, detail });
  process.stderr.write(`matrix driver: ${name}: ${status}: ${detail}\n`);
};

class NotApplicable extends Error {}
class Failed extends Error {}

const short = (value, limit = 300) => {
  let text = typeof value === "string" ? value : JSON.stringify(value);
  text = String(text).split(/\s+/).join(" ").trim();
  return text.length <= limit ? text : text.slice(0, limit - 1) + "…";
};
const describeError = (err) => {
  const code = err && err.code !== undefined ? ` ${err.code}` : "";
  return `${err && err.constructor ? err.constructor.name : "Error"}${code}: ${short(String(err && err.message ? err.message : err), 400)}`;
};
const blockText = (blocks) =>
  (blocks || [])
    .map((b) => {
      if (b.type === "text") return String(b.text ?? "");
      if (b.type === "resource") return `${b.resource?.text ?? ""}\n${b.resource?.uri ?? ""}`;
      if (b.type === "resource_link") return String(b.uri ?? "");
      return "";
    })
    .join("\n");
const messageText = (messages) =>
  (messages || []).map((m) => blockText(Array.isArray(m.content) ? m.content : m.content ? [m.content] : [])).join("\n");
const callLabel = (name, args) => `tools/call ${name} ${short(args || {}, 120)}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the client and its handlers ---------------------------------------------------------------
const answers = { elicitation: {}, sampling: "", elicitations: 0, samplings: 0, rootsAsked: 0, logs: [] };
const client = new Client(
  { name: "matrix-typescript-sdk", version: "1" },
  { capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } } },
);
client.setRequestHandler(types.CreateMessageRequestSchema, async () => {
  answers.samplings += 1;
  return {
    role: "assistant",
    content: { type: "text", text: answers.sampling || "matrix sampling answer" },
    model: "matrix-model",
    stopReason: "endTurn",
  };
});
client.setRequestHandler(types.ElicitRequestSchema, async () => {
  answers.elicitations += 1;
  return { action: "accept", content: answers.elicitation };
});
client.setRequestHandler(types.ListRootsRequestSchema, async () => {
  answers.rootsAsked += 1;
  return { roots: plan.roots };
});
client.setNotificationHandler(types.LoggingMessageNotificationSchema, async (n) => {
  answers.logs.push(n.params);
});

let protocolVersion = "?";
function watching(transport) {
  // Reads the negotiated version off the initialize response as it passes (the client keeps it private).
  return new Proxy(transport, {
    set(target, prop, value) {
      if (prop === "onmessage" && typeof value === "function") {
        target.onmessage = (message, extra) => {
          if (message && message.result && message.result.protocolVersion) protocolVersion = message.result.protocolVersion;
          return value(message, extra);
        };
        return true;
      }
      target[prop] = value;
      return true;
    },
    get(target, prop) {
      const v = target[prop];
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

const timeoutMs = 1000 * (plan.feature_timeout_s ?? 20);
const requestOptions = { timeout: timeoutMs };
// Await one request; a failure becomes Failed("<request> → <what came back>").
async function request(label, promise) {
  try {
    return await promise;
  } catch (e) {
    if (e instanceof Failed || e instanceof NotApplicable || (e && e.name === "AbortError")) throw e;
    throw new Failed(`${label} → ${describeError(e)}`);
  }
}
async function callTool(name, args, onprogress, signal) {
  const options = { ...requestOptions, signal };
  if (onprogress) {
    options.onprogress = onprogress;
    options.resetTimeoutOnProgress = true;
  }
  const call = client.callTool({ name, arguments: args || {} }, undefined, options);
  const result = signal ? await call : await request(callLabel(name, args), call);
  return [Boolean(result.isError), result.content || []];
}

async function callExpect(spec) {
  const [isError, blocks] = await callTool(spec.tool, spec.args);
  const text = blockText(blocks);
  const label = callLabel(spec.tool, spec.args);
  if (isError) return ["fail", `${label} → isError: ${short(text)}`];
  if (!text.includes(spec.expect)) return ["fail", `${label} → result lacks '${spec.expect}': ${short(text)}`];
  return ["pass", `${label} → ${short(text, 120)}`];
}

// ---- the features ------------------------------------------------------------------------------
const FEATURES = {
  async first_list(spec) {
    const names = [];
    let cursor;
    for (let i = 0; i < 20; i++) {
      const page = await request("first tools/list", client.listTools(cursor ? { cursor } : undefined, requestOptions));
      names.push(...page.tools.map((t) => t.name));
      cursor = page.nextCursor;
      if (!cursor) break;
    }
    const missing = spec.expect_tools.filter((t) => !names.includes(t));
    if (missing.length) return ["fail", `first tools/list → ${names.length} tools, missing ${missing.length}: ${short(missing, 400)}`];
    return ["pass", `first tools/list → ${names.length} tools, all ${spec.expect_tools.length} expected`];
  },

  async call(spec) {
    return callExpect(spec);
  },

  async progress(spec) {
    const seen = [];
    const label = callLabel(spec.tool, spec.args);
    const [isError, blocks] = await callTool(spec.tool, spec.args, (p) => seen.push([p.progress, p.total]));
    await sleep(200);
    if (isError) return ["fail", `${label} → isError: ${short(blockText(blocks))}`];
    const values = seen.map(([p]) => p);
    const shown = seen.slice(0, 6).map(([p, t]) => (t !== undefined ? `${p}/${t}` : `${p}`)).join(", ");
    if (seen.length < spec.min) return ["fail", `${label} with a progressToken → ${seen.length} progress notifications, expected ≥ ${spec.min}`];
    if (values.some((v, i) => i > 0 && v < values[i - 1])) return ["fail", `${label} → progress not increasing: ${shown}`];
    return ["pass", `${label} → ${seen.length} progress notifications (${shown})`];
  },

  async cancel(spec) {
    const label = callLabel(spec.tool, spec.args);
    const controller = new AbortController();
    let started;
    const first = new Promise((resolve) => (started = resolve));
    const outcome = {};
    const running = callTool(spec.tool, spec.args, () => started(), controller.signal).then(
      (r) => { outcome.result = r; outcome.ended = Date.now(); },
      (e) => { outcome.error = describeError(e); outcome.ended = Date.now(); },
    );
    const got = await Promise.race([first.then(() => true), sleep(15000).then(() => false)]);
    if (!got) {
      controller.abort("matrix: no progress");
      return ["fail", `${label} → no progress notification within 15 s, so nothing to cancel`];
    }
    const t0 = Date.now();
    controller.abort("matrix cancels the call");
    await Promise.race([running, sleep(5000)]);
    if (outcome.result) return ["fail", `${label} was cancelled after its first progress notification but completed: ${short(outcome.result)}`];
    if (!outcome.ended) return ["fail", `${label} cancelled → the call did not end within 5 s`];
    const ended = `ended ${((outcome.ended - t0) / 1000).toFixed(2)} s after the cancellation` + (outcome.error ? ` raising ${outcome.error}` : "");
    const check = spec.check;
    if (!check) return ["pass", `${label} cancelled after its first progress notification; ${ended}`];
    const deadline = Date.now() + 5000;
    let status, detail;
    for (;;) {
      [status, detail] = await callExpect(check);
      if (status === "pass" || Date.now() > deadline) break;
      await sleep(250);
    }
    if (status !== "pass") return ["fail", `${label} cancelled (${ended}); ${check.means}: no: ${detail}`];
    return ["pass", `${label} cancelled (${ended}); ${check.means}: ${detail}`];
  },

  async resource_links(spec) {
    const label = callLabel(spec.tool, spec.args);
    const [isError, blocks] = await callTool(spec.tool, spec.args);
    if (isError) return ["fail", `${label} → isError: ${short(blockText(blocks))}`];
    const links = blocks.filter((b) => b.type === "resource_link").map((b) => b.uri);
    if (!links.length) return ["fail", `${label} → no resource_link blocks: ${short(blocks)}`];
    const read = [];
    for (const uri of links.slice(0, spec.read ?? 2)) {
      let contents;
      try {
        contents = (await client.readResource({ uri }, requestOptions)).contents;
      } catch (e) {
        return ["fail", `${label} → resource_link ${uri}; resources/read ${uri} → ${describeError(e)}`];
      }
      if (!contents || !contents.some((c) => c.text || c.blob)) return ["fail", `resources/read ${uri} → no contents: ${short(contents)}`];
      read.push(uri);
    }
    return ["pass", `${label} → ${links.length} links; read ${read.join(", ")}`];
  },

  async prompts(spec) {
    const names = (await request("prompts/list", client.listPrompts(undefined, requestOptions))).prompts.map((p) => p.name);
    const missing = spec.expect.filter((p) => !names.includes(p));
    if (missing.length) return ["fail", `prompts/list → ${names.length} prompts, missing ${JSON.stringify(missing)}`];
    const get = spec.get;
    let messages;
    try {
      messages = (await client.getPrompt({ name: get.name, arguments: get.args || {} }, requestOptions)).messages;
    } catch (e) {
      return ["fail", `prompts/get ${get.name} ${short(get.args || {})} → ${describeError(e)}`];
    }
    const text = messageText(messages);
    if (!text.includes(get.expect)) return ["fail", `prompts/get ${get.name} → lacks '${get.expect}': ${short(text)}`];
    return ["pass", `prompts/list → ${names.length}; prompts/get ${get.name} → ${short(text, 100)}`];
  },

  async completion(spec) {
    const ref = spec.ref;
    const label = `completion/complete ${ref.type} ${ref.name ?? ref.uri} ${spec.argument.name}='${spec.argument.value}'`;
    let values;
    try {
      const params = { ref, argument: spec.argument };
      if (spec.context) params.context = { arguments: spec.context };
      values = (await client.complete(params, requestOptions)).completion.values;
    } catch (e) {
      return ["fail", `${label} → ${describeError(e)}`];
    }
    if (!values.includes(spec.expect)) return ["fail", `${label} → ${short(values)}, expected '${spec.expect}' among them`];
    return ["pass", `${label} → ${short(values, 100)}`];
  },

  async logging(spec) {
    const notes = [];
    try {
      await client.setLoggingLevel(spec.level, requestOptions);
      notes.push(`logging/setLevel ${spec.level} → ok`);
    } catch (e) {
      return ["fail", `logging/setLevel ${spec.level} → ${describeError(e)}`];
    }
    const before = answers.logs.length;
    const label = callLabel(spec.tool, spec.args);
    const [isError, blocks] = await callTool(spec.tool, spec.args);
    if (isError) return ["fail", `${notes.join("; ")}; ${label} → isError: ${short(blockText(blocks))}`];
    const wait = spec.wait_s ?? 3;
    const deadline = Date.now() + wait * 1000;
    while (answers.logs.length - before < spec.min && Date.now() < deadline) await sleep(50);
    const got = answers.logs.slice(before);
    if (got.length < spec.min) return ["fail", `${notes.join("; ")}; ${label} → ${got.length} notifications/message within ${wait} s, expected ≥ ${spec.min}`];
    const s = got[0];
    return ["pass", `${notes.join("; ")}; ${label} → ${got.length} notifications/message (first: level ${s.level}, logger '${s.logger}', ${short(s.data, 80)})`];
  },

  async elicitation(spec) {
    const before = answers.elicitations;
    answers.elicitation = spec.answer;
    const [status, detail] = await callExpect(spec);
    const asked = answers.elicitations - before;
    if (!asked) return ["fail", `${detail} (the client was never asked: no elicitation/create reached it)`];
    return [status, `${detail} (client answered ${asked} elicitation/create)`];
  },

  async sampling(spec) {
    const before = answers.samplings;
    answers.sampling = spec.answer;
    const [status, detail] = await callExpect(spec);
    const asked = answers.samplings - before;
    if (!asked) return ["fail", `${detail} (the client was never asked: no sampling/createMessage reached it)`];
    return [status, `${detail} (client answered ${asked} sampling/createMessage)`];
  },

  async roots(spec) {
    const [status, detail] = await callExpect(spec);
    return [status, `${detail} (client answered roots/list ${answers.rootsAsked}×)`];
  },
};

// ---- the session ----------------------------------------------------------------------------------
const target = plan.target;
let transport;
if (target.kind === "stdio") {
  transport = new StdioClientTransport({
    command: target.command,
    args: target.args,
    env: { ...process.env, ...(target.env || {}) },
    cwd: target.cwd,
    stderr: "inherit",
  });
} else {
  transport = new StreamableHTTPClientTransport(new URL(target.url), { requestInit: { headers: target.headers || {} } });
}

const failRemaining = (why) => {
  for (const spec of plan.features) if (!decided.has(spec.name)) feature(spec.name, "fail", why);
};

try {
  await Promise.race([
    client.connect(watching(transport), { timeout: 1000 * (plan.connect_timeout_s ?? 30) }),
    sleep(1000 * (plan.connect_timeout_s ?? 30)).then(() => {
      throw new Error(`no initialize answer within ${plan.connect_timeout_s ?? 30} s`);
    }),
  ]);
  write({ info: { protocol_version: protocolVersion } });
  for (const spec of plan.features) {
    const t0 = Date.now();
    let status, detail;
    try {
      [status, detail] = await Promise.race([
        FEATURES[spec.name](spec),
        sleep(timeoutMs).then(() => ["fail", `no answer within ${timeoutMs / 1000} s (${spec.name})`]),
      ]);
    } catch (e) {
      if (e instanceof NotApplicable) [status, detail] = ["n/a", e.message];
      else if (e instanceof Failed) [status, detail] = ["fail", e.message];
      else [status, detail] = ["fail", describeError(e)];
    }
    feature(spec.name, status, `${detail} [${((Date.now() - t0) / 1000).toFixed(1)} s]`);
  }
} catch (e) {
  failRemaining(`session failed: ${describeError(e)}`);
}
try {
  await Promise.race([client.close(), sleep(5000)]);
} catch {
  // closing a broken session is not a result
}
process.exit(0);
