"""The alert rules speak of metrics the worker exports (promtool checks their syntax and
behaviour in .ci/run: scripts/check-metrics)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import agent.obs.metrics  # noqa: F401  (registers the worker's metrics)
import auth.limits  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
# exported by collectors at scrape time rather than registered metrics
COLLECTED = {
    "gpu_memory_used_bytes",
    "gpu_memory_total_bytes",
    *(
        f"clip_cache_{n}"
        for n in ("hits", "misses", "evictions", "corrupt", "write_errors", "bytes", "clips")
    ),
}
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "max", "histogram_quantile", "clamp_min", "le", "up",
    "job", "instance", "engine", "gpu", "reason", "outcome", "stage", "kind",
}  # fmt: skip


def exported_names() -> set[str]:
    names = set(COLLECTED)
    for family in REGISTRY.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
    return names


def test_every_metric_in_the_alert_rules_is_exported() -> None:
    rules = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    exprs = [r["expr"] for group in rules["groups"] for r in group["rules"]]
    assert len(exprs) >= 10
    exported = exported_names()
    used = set()
    for expr in exprs:
        names_only = re.sub(r'"[^"]*"|\[[^\]]*\]', "", expr)  # label values, time ranges
        used |= set(re.findall(r"[a-z_][a-z0-9_]*", names_only)) - PROMQL_WORDS
    assert used, exprs
    assert not used - exported, sorted(used - exported)
