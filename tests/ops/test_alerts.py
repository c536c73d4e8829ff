"""The alert rules and the Grafana dashboard speak of metrics the worker exports (promtool
checks the rules' syntax and behaviour, and a live /metrics, in .ci/run:
scripts/check-metrics)."""

from __future__ import annotations

import json
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
    "job", "instance", "engine", "gpu", "reason", "outcome", "stage", "kind", "tenant",
    "limit", "ignoring", "group_left",
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


def metric_names(exprs: list[str]) -> set[str]:
    used: set[str] = set()
    for expr in exprs:
        # label values, time ranges (Grafana's $__rate_interval too)
        names_only = re.sub(r'"[^"]*"|\[[^\]]*\]', "", expr)
        used |= set(re.findall(r"[a-z_][a-z0-9_]*", names_only)) - PROMQL_WORDS
    return used


def test_every_metric_in_the_alert_rules_is_exported() -> None:
    rules = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    exprs = [r["expr"] for group in rules["groups"] for r in group["rules"]]
    assert len(exprs) >= 10
    used = metric_names(exprs)
    assert used, exprs
    assert not used - exported_names(), sorted(used - exported_names())


def test_every_dashboard_query_uses_exported_metrics() -> None:
    dashboard = json.loads((REPO / "deploy/grafana/voice-agent.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    used = metric_names(exprs)
    assert "voice_to_voice_latency_seconds_bucket" in used
    assert not used - exported_names(), sorted(used - exported_names())
