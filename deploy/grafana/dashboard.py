#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes omni-proxmox.json, the Grafana dashboard over the provider's /metrics.

The dashboard is a list of rows, each a list of panels; a panel is a title, a kind and its
PromQL. Adding a metric's panel is one line below, then `python3 deploy/grafana/dashboard.py`.
`--check` exits 1 when omni-proxmox.json is not what this file generates (a ctest test runs it),
and tests/deploy/dashboard_metrics_test.cc checks that every query names a metric a running
provider exports.

Every query selects the provider instances chosen in the dashboard's `instance` variable.
"""

import json
import pathlib
import sys

OUTPUT = pathlib.Path(__file__).with_name("omni-proxmox.json")
SEL = 'instance=~"$instance"'  # the instance filter every selector carries
RATE = "$__rate_interval"


def stat(title, expr, unit="none", mappings=None, thresholds=None, description=""):
    return {"kind": "stat", "title": title, "targets": [(expr, "")], "unit": unit, "mappings": mappings,
            "thresholds": thresholds, "description": description, "width": 6, "height": 4}


def series(title, targets, unit="none", description="", stack=False, width=12):
    if isinstance(targets, str):
        targets = [(targets, "")]
    return {"kind": "timeseries", "title": title, "targets": targets, "unit": unit, "description": description,
            "stack": stack, "width": width, "height": 8}


UP_DOWN = [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}}}]
RED_ABOVE_ZERO = [{"color": "green", "value": None}, {"color": "red", "value": 1}]

ROWS = [
    ("Health", [
        stat("Omni connection", f"min(omni_proxmox_omni_up{{{SEL}}})", mappings=UP_DOWN,
             description="1 when the last heartbeat reached Omni with the provider key (0: unreachable or key rejected)"),
        stat("Proxmox API", f"min(omni_proxmox_proxmox_up{{{SEL}}})", mappings=UP_DOWN,
             description="1 when the last Proxmox check succeeded"),
        stat("Queue", f"sum(omni_proxmox_queue_depth{{{SEL}}})",
             description="MachineRequests queued or being reconciled"),
        stat("Failed requests", f'sum(omni_proxmox_requests{{{SEL}, stage="failed"}})', thresholds=RED_ABOVE_ZERO,
             description="MachineRequests in stage FAILED (omni-proxmox status shows why)"),
    ]),
    ("MachineRequests", [
        series("Requests by stage", [(f"sum by (stage) (omni_proxmox_requests{{{SEL}}})", "{{stage}}")], stack=True,
               description="This provider's MachineRequests by stage, from Omni every 15 s"),
        series("Provisioned and torn down", [
            (f"sum(increase(omni_proxmox_requests_provisioned_total{{{SEL}}}[{RATE}]))", "provisioned"),
            (f"sum(increase(omni_proxmox_requests_deprovisioned_total{{{SEL}}}[{RATE}]))", "torn down"),
            (f"sum(increase(omni_proxmox_failures_total{{{SEL}}}[{RATE}]))", "failed"),
        ]),
        series("Step duration (p95)", [(
            f"histogram_quantile(0.95, sum by (le, step) "
            f"(rate(omni_proxmox_step_duration_seconds_bucket{{{SEL}}}[{RATE}])))", "{{step}}")], unit="s",
            description="Time one reconcile pass spent in each provisioning step"),
        series("Step passes per second", [(
            f"sum by (step) (rate(omni_proxmox_step_duration_seconds_count{{{SEL}}}[{RATE}]))", "{{step}}")],
            unit="ops"),
    ]),
    ("Proxmox", [
        series("API calls by endpoint", [(
            f"sum by (method, endpoint) (rate(omni_proxmox_pve_requests_total{{{SEL}}}[{RATE}]))",
            "{{method}} {{endpoint}}")], unit="reqps"),
        series("API errors by endpoint and kind", [(
            f'sum by (method, endpoint, result) (rate(omni_proxmox_pve_requests_total{{{SEL}, result!="ok"}}[{RATE}]))',
            "{{method}} {{endpoint}}: {{result}}")], unit="reqps",
            description="Calls that failed, by error kind (locked, not-found, transient, ...)"),
        series("API latency (p95)", [(
            f"histogram_quantile(0.95, sum by (le, method, endpoint) "
            f"(rate(omni_proxmox_pve_request_duration_seconds_bucket{{{SEL}}}[{RATE}])))",
            "{{method}} {{endpoint}}")], unit="s", description="Limiter waits excluded; a task wait is method WAIT"),
        series("Heavy tasks in flight per node", [(
            f"sum by (node) (omni_proxmox_pve_tasks_in_flight{{{SEL}}})", "{{node}}")], stack=True,
            description="Task slots held (--max-tasks-per-node)"),
        series("Time waiting for the limits", [(
            f"sum by (limit) (rate(omni_proxmox_pve_rate_limited_seconds_total{{{SEL}}}[{RATE}]))", "{{limit}}")],
            unit="s", description="Seconds per second callers waited for a request token or a task slot"),
    ]),
    ("VMs", [
        series("Managed VMs per node", [(f"sum by (node) (omni_proxmox_vms_managed{{{SEL}}})", "{{node}}")],
               stack=True, description="VMs with this provider's ownership markers, every 15 s"),
        series("VMs created, adopted and deleted", [
            (f"sum(increase(omni_proxmox_vms_created_total{{{SEL}}}[{RATE}]))", "created"),
            (f"sum(increase(omni_proxmox_vms_adopted_total{{{SEL}}}[{RATE}]))", "adopted"),
            (f"sum(increase(omni_proxmox_vms_deleted_total{{{SEL}}}[{RATE}]))", "deleted"),
        ]),
    ]),
    ("Garbage collection", [
        series("Found and kept", [(f"sum by (kind) (omni_proxmox_gc_findings{{{SEL}}})", "{{kind}}")],
               description="Orphan VMs and unused ISOs the last cycle found and did not delete"),
        series("Deleted", [(f"sum by (kind) (increase(omni_proxmox_gc_deleted_total{{{SEL}}}[{RATE}]))", "{{kind}}")],
               description="Garbage deleted (--gc-mode delete)"),
    ]),
]

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def panel_json(panel, panel_id, x, y):
    field_config = {"defaults": {"unit": panel["unit"]}, "overrides": []}
    if panel.get("mappings"):
        field_config["defaults"]["mappings"] = panel["mappings"]
    if panel.get("thresholds"):
        field_config["defaults"]["thresholds"] = {"mode": "absolute", "steps": panel["thresholds"]}
    if panel["kind"] == "timeseries":
        field_config["defaults"]["custom"] = {"fillOpacity": 10, "stacking": {"mode": "normal" if panel["stack"] else "none"}}
    out = {
        "id": panel_id,
        "type": panel["kind"],
        "title": panel["title"],
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel["width"], "h": panel["height"]},
        "fieldConfig": field_config,
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(panel["targets"])],
    }
    if panel.get("description"):
        out["description"] = panel["description"]
    if panel["kind"] == "stat":
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"}
    return out


def dashboard():
    panels = []
    panel_id = 1
    y = 0
    for row_title, row_panels in ROWS:
        panels.append({"id": panel_id, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        panel_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row_panels:
            if x + panel["width"] > 24:
                x = 0
                y += row_height
                row_height = 0
            panels.append(panel_json(panel, panel_id, x, y))
            panel_id += 1
            x += panel["width"]
            row_height = max(row_height, panel["height"])
        y += row_height
    return {
        "uid": "omni-proxmox",
        "title": "omni-proxmox",
        "description": "Sidero Omni infrastructure provider for Proxmox VE (generated by deploy/grafana/dashboard.py)",
        "tags": ["omni", "proxmox", "talos"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
            {"name": "instance", "label": "Provider", "type": "query", "datasource": DATASOURCE,
             "query": {"query": "label_values(omni_proxmox_omni_up, instance)", "refId": "instance"},
             "definition": "label_values(omni_proxmox_omni_up, instance)",
             "includeAll": True, "multi": True, "current": {"text": "All", "value": "$__all"}, "refresh": 2},
        ]},
        "panels": panels,
    }


def main():
    text = json.dumps(dashboard(), indent=2) + "\n"
    if sys.argv[1:] == ["--check"]:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is not what {pathlib.Path(__file__).name} generates; run python3 {__file__}")
            return 1
        print(f"{OUTPUT.name} is up to date")
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
