// target-tracking in JavaScript: desired = ceil(metric / target per replica).
//
// The same algorithm as plugins/target-tracking (Rust) and
// plugins/python/target-tracking; the host's tests check that the three
// decide identically. Build: `just plugins` (componentize-js against ../../../wit).

const I32_MIN = -(2 ** 31);
const I32_MAX = 2 ** 31 - 1;
const U32_MAX = 2 ** 32 - 1;

function invalid(message) {
  return { tag: "invalid-params", val: message };
}

function parseParams(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw invalid(`params are not JSON: ${error.message}`);
  }
  if (value === null || typeof value !== "object" || typeof value.metric !== "string") {
    throw invalid("params.metric must be a string");
  }
  if (typeof value.target !== "number" || !(value.target > 0)) {
    throw invalid("params.target must be a number > 0");
  }
  const maxAge = value.max_age_seconds === undefined ? 60 : value.max_age_seconds;
  if (typeof maxAge !== "number" || maxAge < 0) {
    throw invalid("params.max_age_seconds must be a number >= 0");
  }
  return { name: value.metric, target: value.target, maxAgeMs: BigInt(Math.trunc(maxAge * 1000)) };
}

export function metadata() {
  return {
    name: "target-tracking-js",
    version: "1.0.0",
    description: "desired = ceil(metric / target per replica), in JavaScript",
    paramsSchema: '{"type":"object","required":["metric","target"]}',
    reads: ["metrics"],
  };
}

export function evaluate(snapshot) {
  const { name, target, maxAgeMs } = parseParams(snapshot.params);
  const metric = snapshot.metrics.find((m) => m.name === name);
  if (metric === undefined) {
    throw { tag: "missing-input", val: `metric ${name} is not in the snapshot` };
  }
  let ageMs = snapshot.nowMs - metric.timestampMs;
  if (ageMs < 0n) ageMs = 0n;
  if (ageMs > maxAgeMs) {
    return {
      desiredReplicas: undefined,
      reason: `metric ${name} is stale (${ageMs} ms old)`,
      state: new Uint8Array(),
      deletionCosts: [],
      metrics: [],
      resources: [],
    };
  }
  const value = Math.max(metric.value, 0);
  const ratio = value / target;
  const desired = Math.min(Math.ceil(ratio), U32_MAX);
  // an integer like Rust's `as i64` (saturating), printed exactly (BigInt)
  const I64_MAX = 9223372036854775807n;
  const ratioPercent = Math.floor((value * 100) / target);
  const percent = Number.isFinite(ratioPercent) && ratioPercent < 2 ** 63 ? BigInt(ratioPercent) : I64_MAX;
  let deletionCosts = [];
  if (desired < snapshot.workload.currentReplicas) {
    deletionCosts = metric.pods
      .filter((s) => s.pod < snapshot.pods.length)
      .map((s) => ({
        pod: snapshot.pods[s.pod].name,
        cost: Math.min(Math.max(Math.floor(s.value), I32_MIN), I32_MAX),
      }));
  }
  return {
    desiredReplicas: desired,
    reason: `${name} at ${percent}% of one replica's target -> ${desired} replicas`,
    state: new TextEncoder().encode(String(desired)),
    deletionCosts,
    metrics: [{ name: "replicas-needed", value: ratio }],
    resources: [],
  };
}
