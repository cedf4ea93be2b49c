"""target-tracking in Python: desired = ceil(metric / target per replica).

The same algorithm as plugins/target-tracking (Rust) and
plugins/js/target-tracking (JavaScript); the host's tests check that the three
decide identically. Build: `just plugins` (componentize-py against ../../../wit).
"""

import json
import math

from componentize_py_types import Err
from wit_world import WitWorld
from wit_world.imports import types
from wit_world.imports.types import (
    Decision,
    PodDeletionCost,
    PolicyError_InvalidParams,
    PolicyError_MissingInput,
    PolicyInfo,
    ReportedMetric,
)

I32_MIN, I32_MAX, U32_MAX = -(2**31), 2**31 - 1, 2**32 - 1


def _params(text):
    try:
        value = json.loads(text)
    except ValueError as error:
        raise Err(PolicyError_InvalidParams(f"params are not JSON: {error}"))
    metric = value.get("metric") if isinstance(value, dict) else None
    if not isinstance(metric, str):
        raise Err(PolicyError_InvalidParams("params.metric must be a string"))
    target = value.get("target")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0:
        raise Err(PolicyError_InvalidParams("params.target must be a number > 0"))
    max_age = value.get("max_age_seconds", 60)
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age < 0:
        raise Err(PolicyError_InvalidParams("params.max_age_seconds must be a number >= 0"))
    return metric, float(target), int(max_age * 1000)


class WitWorld(WitWorld):
    def metadata(self) -> PolicyInfo:
        return PolicyInfo(
            name="target-tracking-py",
            version="1.0.0",
            description="desired = ceil(metric / target per replica), in Python",
            params_schema='{"type":"object","required":["metric","target"]}',
            reads=["metrics"],
        )

    def evaluate(self, snapshot: types.Snapshot) -> Decision:
        name, target, max_age_ms = _params(snapshot.params)
        metric = next((m for m in snapshot.metrics if m.name == name), None)
        if metric is None:
            raise Err(PolicyError_MissingInput(f"metric {name} is not in the snapshot"))
        age_ms = max(snapshot.now_ms - metric.timestamp_ms, 0)
        if age_ms > max_age_ms:
            return Decision(None, f"metric {name} is stale ({age_ms} ms old)", b"", [], [], [])
        value = max(metric.value, 0.0)
        ratio = value / target
        desired = int(min(math.ceil(ratio), U32_MAX))
        # an integer like Rust's `as i64` (saturating)
        ratio_percent = value * 100.0 / target
        percent = math.floor(ratio_percent) if math.isfinite(ratio_percent) and ratio_percent < 2.0**63 else 2**63 - 1
        costs = []
        if desired < snapshot.workload.current_replicas:
            costs = [
                PodDeletionCost(snapshot.pods[s.pod].name, int(min(max(math.floor(s.value), I32_MIN), I32_MAX)))
                for s in metric.pods
                if s.pod < len(snapshot.pods)
            ]
        return Decision(
            desired,
            f"{name} at {percent}% of one replica's target -> {desired} replicas",
            str(desired).encode(),
            costs,
            [ReportedMetric("replicas-needed", ratio)],
            [],
        )
