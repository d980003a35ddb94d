"""deploy/monitoring: the alert rules are the README's alert table, and the alert rules
and the Grafana dashboard name only metrics the product exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

import worker.metrics
import worker.redials

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
METRIC = re.compile(r"\bcallbacks_[a-z_]+\b")


def exported(*modules: Any) -> set[str]:
    """Series names the modules export: a counter's ``_total``, a histogram's
    ``_bucket``/``_sum``/``_count``, and the gauges collected at scrape time."""
    names: set[str] = set()
    for module in modules:
        for value in vars(module).values():
            if not isinstance(value, MetricWrapperBase):
                continue
            base = value._name
            if isinstance(value, Counter):
                names |= {base + "_total", base + "_created"}
            elif isinstance(value, Histogram):
                names |= {base + s for s in ("_bucket", "_sum", "_count", "_created")}
            else:
                names.add(base)
        source = Path(module.__file__).read_text()
        names |= set(re.findall(r'GaugeMetricFamily\(\s*"(callbacks_[a-z_]+)"', source))
    return names


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_are_well_formed() -> None:
    found = rules()
    assert found
    names = [r["alert"] for r in found]
    assert len(names) == len(set(names))
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"]
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")"), rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])


def test_alerts_name_only_metrics_of_worker_metrics() -> None:
    known = exported(worker.metrics)
    for rule in rules():
        used = set(METRIC.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= known, (rule["alert"], used - known)


def test_every_alert_row_of_the_readme_has_a_rule() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(callbacks_[a-z_]+)(?:\{[^}]*\})?` \| (.+) \|$", readme, re.M)
    alerting = {name for name, when in rows if when.strip() != "dashboards"}
    assert alerting, "the README's alert table was not found"
    in_rules = {m for rule in rules() for m in METRIC.findall(rule["expr"])}
    # A counter is alerted on through its _total series.
    covered = {m.removesuffix("_total") for m in in_rules} | in_rules
    assert alerting <= covered, alerting - covered


def test_dashboard_names_only_exported_metrics() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    known = exported(worker.metrics, worker.redials)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used <= known, used - known
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    # Every metric the product exports is on the dashboard (counters by their _total).
    bases = {n.removesuffix("_bucket") for n in used}
    wanted = {n for n in known if not n.endswith(("_created", "_sum", "_count"))}
    assert {n.removesuffix("_bucket") for n in wanted} <= bases, wanted - used
