"""target-tracking in Python: desired = ceil(metric / target per replica).

The same algorithm as plugins/target-tracking (Rust) and
plugins/js/target-tracking (JavaScript), each on its language's SDK; the
host's tests check that the three decide identically and publish the same
params schema. Build: `just plugins` (componentize-py, with the SDK in
plugins/python/sdk on the path).
"""

import math

import scalegate_policy as sg

I64_MAX = 2**63 - 1


class TargetTracking(sg.Policy):
    name = "target-tracking-py"
    version = "1.0.0"
    description = "desired = ceil(metric / target per replica), in Python"
    reads = ["metrics"]
    params_schema = {
        "type": "object",
        "required": ["metric", "target"],
        "additionalProperties": False,
        "properties": {
            "metric": {"type": "string", "description": "Name of the metric in the snapshot."},
            "target": {"type": "number", "exclusiveMinimum": 0, "description": "What one replica should carry."},
            "max_age_seconds": {
                "type": "number",
                "minimum": 0,
                "default": 60.0,
                "description": "Older metrics give no opinion.",
            },
        },
    }

    def decide(self, snapshot, params):
        name, target = params["metric"], params["target"]
        try:
            metric = snapshot.fresh_metric(name, int(params["max_age_seconds"] * 1000))
        except sg.Stale as stale:
            return sg.no_opinion(str(stale))
        value = max(metric.value, 0.0)
        ratio = value / target
        desired = int(min(math.ceil(ratio), sg.U32_MAX))
        # an integer like Rust's `as i64` (saturating)
        ratio_percent = value * 100.0 / target
        percent = math.floor(ratio_percent) if math.isfinite(ratio_percent) and ratio_percent < 2.0**63 else I64_MAX
        costs = snapshot.deletion_costs_by(metric) if desired < snapshot.workload.current_replicas else []
        return sg.decision(
            desired,
            f"{name} at {percent}% of one replica's target -> {desired} replicas",
            state=desired,
            deletion_costs=costs,
            metrics={"replicas-needed": ratio},
        )


WitWorld = sg.export(TargetTracking)
