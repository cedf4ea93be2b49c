// target-tracking in JavaScript: desired = ceil(metric / target per replica).
//
// The same algorithm as plugins/target-tracking (Rust) and
// plugins/python/target-tracking, each on its language's SDK; the host's
// tests check that the three decide identically and publish the same params
// schema. Build: `just plugins` (componentize-js).

import * as sg from "../sdk/index.js";

const I64_MAX = 9223372036854775807n;

export const { metadata, evaluate } = sg.exportPolicy({
  name: "target-tracking-js",
  version: "1.0.0",
  description: "desired = ceil(metric / target per replica), in JavaScript",
  reads: ["metrics"],
  paramsSchema: {
    type: "object",
    required: ["metric", "target"],
    additionalProperties: false,
    properties: {
      metric: { type: "string", description: "Name of the metric in the snapshot." },
      target: { type: "number", exclusiveMinimum: 0, description: "What one replica should carry." },
      max_age_seconds: { type: "number", minimum: 0, default: 60.0, description: "Older metrics give no opinion." },
    },
  },

  decide(snapshot, params) {
    const { metric: name, target } = params;
    let metric;
    try {
      metric = snapshot.freshMetric(name, BigInt(Math.trunc(params.max_age_seconds * 1000)));
    } catch (error) {
      if (error instanceof sg.Stale) return sg.noOpinion(error.message);
      throw error;
    }
    const value = Math.max(metric.value, 0);
    const ratio = value / target;
    const desired = Math.min(Math.ceil(ratio), sg.U32_MAX);
    // an integer like Rust's `as i64` (saturating), printed exactly (BigInt)
    const ratioPercent = Math.floor((value * 100) / target);
    const percent = Number.isFinite(ratioPercent) && ratioPercent < 2 ** 63 ? BigInt(ratioPercent) : I64_MAX;
    return sg.decision({
      replicas: desired,
      reason: `${name} at ${percent}% of one replica's target -> ${desired} replicas`,
      state: desired,
      deletionCosts: desired < snapshot.workload.currentReplicas ? snapshot.deletionCostsBy(metric) : [],
      metrics: { "replicas-needed": ratio },
    });
  },
});
