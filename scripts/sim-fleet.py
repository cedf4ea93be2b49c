#!/usr/bin/env python3
"""Writes a fleet for the simulator benchmark (docs/BENCHMARKS.md):
`sim-fleet.py N DIR` -> DIR/fleet.yaml (N workloads, half `hpa` on cpu,
half `target-tracking` on rps) and DIR/trace.csv (a day of diurnal load,
one row per workload every 10 minutes)."""
import math
import os
import sys

n, out = int(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "fleet.yaml"), "w") as f:
    f.write("defaults:\n  interval: 15s\nworkloads:\n")
    for i in range(n):
        f.write(f"  - target: {{namespace: fleet, name: w{i}}}\n    min_replicas: 1\n    max_replicas: 40\n    policies:\n")
        if i % 2 == 0:
            f.write("      - policy: hpa\n        params: {metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}}], behavior: {scaleDown: {stabilizationWindowSeconds: 300}}}\n")
        else:
            f.write("      - policy: target-tracking\n        params: {metric: rps, target: 80}\n")
with open(os.path.join(out, "trace.csv"), "w") as f:
    f.write("time,workload,load\n")
    for t in range(0, 86400 + 1, 600):
        for i in range(n):
            peak = 400 + 40 * (i % 10)
            load = 50 + peak * max(0.0, math.sin(math.pi * (t / 86400.0 + i / (3.0 * n))) ** 2)
            f.write(f"{t},fleet/w{i},{load:.1f}\n")
