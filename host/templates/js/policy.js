// {{name}}: desired = ceil(metric / target per replica).
//
// A starting point: change paramsSchema and decide(), keep the cases in
// cases/ passing. Build with ./build.sh (componentize-js).

import * as sg from "./lib/scalegate-policy.js";

export const { metadata, evaluate } = sg.exportPolicy({
  name: "{{name}}",
  version: "0.1.0",
  description: "desired = ceil(metric / target per replica)",
  reads: ["metrics"],
  paramsSchema: {
    type: "object",
    required: ["metric", "target"],
    additionalProperties: false,
    properties: {
      metric: { type: "string", description: "Name of the metric in the snapshot." },
      target: { type: "number", exclusiveMinimum: 0, description: "What one replica should carry." },
      max_age_seconds: { type: "number", minimum: 0, default: 60 },
    },
  },

  decide(snapshot, params) {
    let metric;
    try {
      metric = snapshot.freshMetric(params.metric, BigInt(Math.trunc(params.max_age_seconds * 1000)));
    } catch (error) {
      if (error instanceof sg.Stale) return sg.noOpinion(error.message);
      throw error;
    }
    const needed = Math.max(metric.value, 0) / params.target;
    const desired = Math.min(Math.ceil(needed), sg.U32_MAX);
    return sg.decision({
      replicas: desired,
      reason: `${params.metric} ${metric.value} / ${params.target} per replica -> ${desired}`,
      metrics: { "replicas-needed": needed },
    });
  },
});
