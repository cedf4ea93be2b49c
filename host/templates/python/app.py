"""{{name}}: desired = ceil(metric / target per replica).

A starting point: change params_schema and decide(), keep the cases in
cases/ passing. Build with ./build.sh (componentize-py).
"""

import math

import scalegate_policy as sg


class {{type}}(sg.Policy):
    name = "{{name}}"
    version = "0.1.0"
    description = "desired = ceil(metric / target per replica)"
    reads = ["metrics"]
    params_schema = {
        "type": "object",
        "required": ["metric", "target"],
        "additionalProperties": False,
        "properties": {
            "metric": {"type": "string", "description": "Name of the metric in the snapshot."},
            "target": {"type": "number", "exclusiveMinimum": 0, "description": "What one replica should carry."},
            "max_age_seconds": {"type": "number", "minimum": 0, "default": 60},
        },
    }

    def decide(self, snapshot, params):
        try:
            metric = snapshot.fresh_metric(params["metric"], int(params["max_age_seconds"] * 1000))
        except sg.Stale as stale:
            return sg.no_opinion(str(stale))
        needed = max(metric.value, 0.0) / params["target"]
        desired = int(min(math.ceil(needed), sg.U32_MAX))
        value = metric.value
        shown = int(value) if float(value).is_integer() else value
        target = int(params["target"]) if float(params["target"]).is_integer() else params["target"]
        return sg.decision(
            desired,
            f"{params['metric']} {shown} / {target} per replica -> {desired}",
            metrics={"replicas-needed": needed},
        )


WitWorld = sg.export({{type}})
