// Write scalegate scaling policies in JavaScript.
//
// A policy is an object with its identity, a JSON Schema for its params
// (checked before `decide` runs, defaults filled in) and
// `decide(snapshot, params)`; `exportPolicy` returns the `metadata` and
// `evaluate` functions componentize-js builds into a component:
//
//   import * as sg from "./lib/scalegate-policy.js";
//   export const { metadata, evaluate } = sg.exportPolicy({
//     name: "pin", version: "1.0.0", description: "Runs params.replicas replicas",
//     paramsSchema: { type: "object", required: ["replicas"],
//                     properties: { replicas: { type: "integer", minimum: 0 } } },
//     decide(snapshot, params) {
//       return sg.decision({ replicas: params.replicas, reason: `pinned at ${params.replicas}` });
//     },
//   });
//
// componentize-js resolves only relative imports: import this file by its
// path (vendored by `scalegate new`, or ./node_modules/scalegate-policy/index.js).
// Contract scalegate:policy@0.2.0. The same helpers exist in the Rust and
// Python SDKs under their languages' names.

export const CONTRACT = "scalegate:policy@0.2.0";
// the host's default limit on decision.state
export const MAX_STATE_BYTES = 64 * 1024;
export const I32_MIN = -(2 ** 31);
export const I32_MAX = 2 ** 31 - 1;
export const U32_MAX = 2 ** 32 - 1;

/** An error the host reads as a decline: throw invalidParams(...) etc. */
export function invalidParams(message) {
  return { tag: "invalid-params", val: message };
}
export function missingInput(message) {
  return { tag: "missing-input", val: message };
}
export function internalError(message) {
  return { tag: "internal", val: message };
}

/** A metric that cannot be used; uncaught, it declines as missing-input. */
export class Unusable extends Error {}
export class Missing extends Unusable {
  constructor(name) {
    super(`metric ${name} is not in the snapshot`);
  }
}
export class Stale extends Unusable {
  constructor(name, ageMs) {
    super(`metric ${name} is stale (${ageMs} ms old)`);
    this.ageMs = ageMs;
  }
}

function stateBytes(state) {
  const bytes = new TextEncoder().encode(JSON.stringify(state));
  if (bytes.length > MAX_STATE_BYTES) {
    throw internalError(`state is ${bytes.length} bytes, the host keeps at most ${MAX_STATE_BYTES}`);
  }
  return bytes;
}

/**
 * A decision. `replicas` undefined or null: no opinion. `state` is any JSON
 * value remembered for the next evaluation (`rawState` bytes as they are);
 * `deletionCosts` [{pod, cost}]; `metrics` an object of name → value.
 */
export function decision({ replicas, reason, state, rawState, deletionCosts = [], metrics = {}, resources = [] }) {
  return {
    desiredReplicas: replicas ?? undefined,
    reason: String(reason ?? ""),
    state: rawState !== undefined ? rawState : state === undefined ? new Uint8Array() : stateBytes(state),
    deletionCosts,
    metrics: Object.entries(metrics).map(([name, value]) => ({ name, value })),
    resources,
  };
}

export function noOpinion(reason, extra = {}) {
  return decision({ ...extra, reason, replicas: undefined });
}

function serving(pod) {
  return pod.phase === "running" && pod.ready === true && !pod.terminating;
}

/** The snapshot with helpers; every field of the record reads through. */
export class Snapshot {
  constructor(raw) {
    Object.assign(this, raw);
  }

  metric(name) {
    return this.metrics.find((m) => m.name === name);
  }

  /** How long before now a time was, in ms (a BigInt; 0n for the future). */
  ageMs(timestampMs) {
    const age = this.nowMs - timestampMs;
    return age < 0n ? 0n : age;
  }

  /** The metric if at most maxAgeMs (BigInt) old; throws Missing or Stale. */
  freshMetric(name, maxAgeMs) {
    const metric = this.metric(name);
    if (metric === undefined) throw new Missing(name);
    const age = this.ageMs(metric.timestampMs);
    if (age > BigInt(maxAgeMs)) throw new Stale(name, age);
    return metric;
  }

  /** A per-pod metric's samples joined to their pods: [pod, sample] pairs. */
  podValues(metric) {
    return metric.pods.filter((s) => s.pod < this.pods.length).map((s) => [this.pods[s.pod], s]);
  }

  readyPods() {
    return this.pods.filter(serving);
  }

  unreadyPods() {
    return this.pods.filter((p) => !serving(p));
  }

  /** Each pod's value, floored and clamped to i32: the least loaded go first. */
  deletionCostsBy(metric) {
    return this.podValues(metric).map(([pod, s]) => ({
      pod: pod.name,
      cost: Math.min(Math.max(Math.floor(s.value), I32_MIN), I32_MAX),
    }));
  }

  highestRecommendationWithin(windowMs) {
    const values = this.recommendations.filter((r) => this.ageMs(r.timestampMs) <= BigInt(windowMs)).map((r) => r.replicas);
    return values.length ? Math.max(...values) : undefined;
  }

  lastScaleMs() {
    return this.scaleEvents.reduce((last, e) => (last === undefined || e.timestampMs > last ? e.timestampMs : last), undefined);
  }

  latestSignal(kind) {
    return this.signals.filter((s) => s.kind === kind).reduce((a, b) => (a === undefined || b.timestampMs > a.timestampMs ? b : a), undefined);
  }

  /** The JSON state returned last time; undefined at first or when unreadable. */
  previousState() {
    if (!this.state || this.state.length === 0) return undefined;
    try {
      return JSON.parse(new TextDecoder().decode(this.state));
    } catch {
      return undefined;
    }
  }
}

// ---- params: the JSON Schema subset the SDKs check (messages match the Rust SDK's)

function short(value) {
  const text = JSON.stringify(value);
  return [...text].length > 40 ? [...text].slice(0, 40).join("") + "…" : text;
}

function isType(v, name) {
  switch (name) {
    case "null": return v === null;
    case "boolean": return typeof v === "boolean";
    case "object": return v !== null && typeof v === "object" && !Array.isArray(v);
    case "array": return Array.isArray(v);
    case "string": return typeof v === "string";
    case "number": return typeof v === "number";
    case "integer": return Number.isInteger(v);
    default: return true;
  }
}

function describe(v) {
  if (v === null) return "null";
  if (typeof v === "boolean") return "a boolean";
  if (typeof v === "number") return `the number ${short(v)}`;
  if (typeof v === "string") return `the string ${short(v)}`;
  if (Array.isArray(v)) return "an array";
  return "an object";
}

function matches(pattern, text) {
  try {
    return new RegExp(pattern, "u").test(text);
  } catch {
    return false;
  }
}

function equal(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** undefined when value satisfies schema, else a message naming where and why. */
export function check(root, schema, value, at) {
  if (schema === null || typeof schema !== "object") return schema === false ? `${at}: not allowed` : undefined;
  if (typeof schema.$ref === "string") {
    let target = root;
    if (schema.$ref.startsWith("#/")) {
      for (const key of schema.$ref.slice(2).split("/")) target = target && typeof target === "object" ? target[key] : undefined;
    }
    if (target === undefined) return `${at}: schema reference ${schema.$ref} does not resolve`;
    const problem = check(root, target, value, at);
    if (problem) return problem;
  }
  const allowed = typeof schema.type === "string" ? [schema.type] : Array.isArray(schema.type) ? schema.type : [];
  if (allowed.length && !allowed.some((t) => isType(value, t))) {
    return `${at}: expected ${allowed.join(" or ")}, got ${describe(value)}`;
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((o) => equal(o, value))) {
    return `${at}: ${short(value)} is not one of ${schema.enum.map((o) => JSON.stringify(o)).join(", ")}`;
  }
  if ("const" in schema && !equal(schema.const, value)) return `${at}: must be ${JSON.stringify(schema.const)}`;
  if (typeof value === "number") {
    for (const [key, rule, fails] of [
      ["minimum", ">=", (b) => value < b],
      ["maximum", "<=", (b) => value > b],
      ["exclusiveMinimum", ">", (b) => value <= b],
      ["exclusiveMaximum", "<", (b) => value >= b],
    ]) {
      if (typeof schema[key] === "number" && fails(schema[key])) return `${at}: must be ${rule} ${schema[key]}, got ${value}`;
    }
  }
  if (typeof value === "string") {
    if (typeof schema.pattern === "string" && !matches(schema.pattern, value)) return `${at}: ${short(value)} does not match ${schema.pattern}`;
    const length = [...value].length;
    if (typeof schema.minLength === "number" && length < schema.minLength) return `${at}: shorter than ${schema.minLength} characters`;
    if (typeof schema.maxLength === "number" && length > schema.maxLength) return `${at}: longer than ${schema.maxLength} characters`;
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === "number" && value.length < schema.minItems) return `${at}: needs at least ${schema.minItems} items, has ${value.length}`;
    if (typeof schema.maxItems === "number" && value.length > schema.maxItems) return `${at}: takes at most ${schema.maxItems} items, has ${value.length}`;
    if ("items" in schema) {
      for (let i = 0; i < value.length; i++) {
        const problem = check(root, schema.items, value[i], `${at}[${i}]`);
        if (problem) return problem;
      }
    }
  }
  if (isType(value, "object")) {
    const problem = checkObject(root, schema, value, at);
    if (problem) return problem;
  }
  for (const sub of schema.allOf ?? []) {
    const problem = check(root, sub, value, at);
    if (problem) return problem;
  }
  for (const keyword of ["anyOf", "oneOf"]) {
    if (!Array.isArray(schema[keyword])) continue;
    const results = schema[keyword].map((b) => check(root, b, value, at));
    const passed = results.filter((r) => r === undefined).length;
    if (passed === 0) {
      const errors = results.filter(Boolean);
      const wrongType = `${at}: expected `;
      return errors.find((e) => !e.startsWith(wrongType)) ?? errors[0] ?? `${at}: matches no allowed form`;
    }
    if (keyword === "oneOf" && passed > 1) return `${at}: matches more than one allowed form`;
  }
  return undefined;
}

function checkObject(root, schema, fields, at) {
  for (const name of schema.required ?? []) {
    if (!(name in fields)) return `${at}: missing field \`${name}\``;
  }
  const count = Object.keys(fields).length;
  if (typeof schema.minProperties === "number" && count < schema.minProperties) return `${at}: needs at least ${schema.minProperties} entries, has ${count}`;
  if (typeof schema.maxProperties === "number" && count > schema.maxProperties) return `${at}: takes at most ${schema.maxProperties} entries, has ${count}`;
  const properties = schema.properties ?? {};
  const patterns = schema.patternProperties ?? {};
  for (const [name, v] of Object.entries(fields)) {
    if ("propertyNames" in schema) {
      const problem = check(root, schema.propertyNames, name, `${at} key ${JSON.stringify(name)}`);
      if (problem) return problem;
    }
    const path = `${at}.${name}`;
    const byPattern = Object.entries(patterns).filter(([p]) => matches(p, name)).map(([, s]) => s);
    for (const sub of byPattern) {
      const problem = check(root, sub, v, path);
      if (problem) return problem;
    }
    if (Object.hasOwn(properties, name)) {
      const problem = check(root, properties[name], v, path);
      if (problem) return problem;
    } else if (byPattern.length === 0) {
      if (schema.additionalProperties === false) {
        const known = Object.keys(properties).join(", ");
        return `${at}: unknown field \`${name}\`` + (known ? `, expected one of: ${known}` : "");
      }
      if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
        const problem = check(root, schema.additionalProperties, v, path);
        if (problem) return problem;
      }
    }
  }
  return undefined;
}

/** Params text as an object, checked against schema, top-level defaults filled in. */
export function parseParams(text, schema) {
  const trimmed = (text ?? "").trim();
  let value = {};
  if (trimmed !== "" && trimmed !== "null") {
    try {
      value = JSON.parse(trimmed);
    } catch (error) {
      throw invalidParams(`params are not JSON: ${error.message}`);
    }
  }
  const problem = check(schema, schema, value, "params");
  if (problem) throw invalidParams(problem);
  if (isType(value, "object")) {
    for (const [key, prop] of Object.entries(schema.properties ?? {})) {
      if (!(key in value) && prop && typeof prop === "object" && "default" in prop) value[key] = prop.default;
    }
  }
  return value;
}

/**
 * The exports componentize-js needs ({metadata, evaluate}) for a policy
 * {name, version, description, paramsSchema, reads, prepare?, decide}.
 */
export function exportPolicy(policy) {
  const schema = policy.paramsSchema ?? { type: "object" };
  const schemaText = JSON.stringify(schema);
  let cached = { text: undefined, params: undefined };
  return {
    metadata() {
      return {
        name: policy.name,
        version: policy.version,
        description: policy.description ?? "",
        paramsSchema: schemaText,
        reads: policy.reads ?? [],
      };
    },
    evaluate(raw) {
      if (cached.text !== raw.params) {
        const parsed = parseParams(raw.params, schema);
        cached = { text: raw.params, params: policy.prepare ? policy.prepare(parsed) : parsed };
      }
      try {
        // a shallow copy: what decide() changes is not seen by the next call
        return policy.decide(new Snapshot(raw), { ...cached.params });
      } catch (error) {
        if (error instanceof Unusable) throw missingInput(error.message);
        throw error;
      }
    },
  };
}
