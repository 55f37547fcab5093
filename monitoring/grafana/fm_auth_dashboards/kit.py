"""Small builders for Grafana dashboard JSON (schema 39), plain dicts and no dependency.

The dashboard modules beside this one are written with these so that every panel gets the
same things an on-call engineer relies on: a unit, a description, the data source
variable, runbook links, and a place in the grid computed here rather than by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

# The provisioned data source (provisioning/datasources/prometheus.yml) has this uid; the
# dashboards select it through the ``datasource`` variable, whose default it is.
DATASOURCE_UID = "faultmaven-prometheus"
DATASOURCE: JSON = {"type": "prometheus", "uid": "${datasource}"}

JOB = "auth-service"
# Every service-side query is scoped to the scrape job and the chosen instances.
SERVICE = f'job="{JOB}", instance=~"$instance"'

RUNBOOK_URL = "https://github.com/faultmaven/faultmaven-auth/blob/main/docs/runbooks/{}.md"
DASHBOARD_TAG = "faultmaven-auth"

GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"


def runbook_link(alert: str) -> JSON:
    return {"title": f"Runbook: {alert}", "url": RUNBOOK_URL.format(alert), "targetBlank": True}


def steps(base: str, *levels: tuple[float, str]) -> JSON:
    """Absolute thresholds: ``base`` colour below the first level, then each level's."""
    return {
        "mode": "absolute",
        "steps": [
            {"color": base, "value": None},
            *({"color": color, "value": value} for value, color in levels),
        ],
    }


def target(
    expr: str, legend: str = "", *, instant: bool = False, fmt: str = "", exemplar: bool = False
) -> JSON:
    body: JSON = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto"}
    if exemplar:  # dots linking to the trace of a sampled request (Tempo)
        body["exemplar"] = True
    if instant:
        body["instant"] = True
        body["range"] = False
    if fmt:
        body["format"] = fmt
    return body


@dataclass
class Panel:
    """One panel; ``kind`` is a Grafana panel type (stat, timeseries, table, bargauge)."""

    title: str
    kind: str
    targets: list[JSON]
    unit: str
    description: str
    runbooks: tuple[str, ...] = ()
    thresholds: JSON | None = None
    width: int = 0
    height: int = 0
    min: float | None = None
    max: float | None = None
    mappings: list[JSON] = field(default_factory=list)
    stack: bool = False

    def size(self) -> tuple[int, int]:
        default = (6, 4) if self.kind == "stat" else (12, 8)
        return (self.width or default[0], self.height or default[1])

    def render(self, panel_id: int, x: int, y: int) -> JSON:
        width, height = self.size()
        defaults: JSON = {"unit": self.unit, "mappings": self.mappings}
        if self.thresholds is not None:
            defaults["thresholds"] = self.thresholds
        else:
            defaults["thresholds"] = steps(GREEN)
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        if self.kind == "stat":
            defaults["color"] = {"mode": "thresholds"}
        if self.kind == "timeseries":
            defaults["color"] = {"mode": "palette-classic"}
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "normal" if self.stack else "none", "group": "A"},
                "thresholdsStyle": {"mode": "dashed" if self.thresholds else "off"},
            }
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": height, "w": width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": self._options(),
            "links": [runbook_link(alert) for alert in self.runbooks],
            "targets": [
                {**t, "refId": chr(ord("A") + index)} for index, t in enumerate(self.targets)
            ],
        }

    def _options(self) -> JSON:
        reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
        if self.kind == "stat":
            return {
                "reduceOptions": reduce,
                "colorMode": "background",
                "graphMode": "area",
                "justifyMode": "auto",
                "orientation": "auto",
                "textMode": "auto",
            }
        if self.kind == "bargauge":
            return {
                "reduceOptions": reduce,
                "displayMode": "gradient",
                "orientation": "horizontal",
                "showUnfilled": True,
            }
        if self.kind == "table":
            return {"showHeader": True, "cellHeight": "sm"}
        return {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }


@dataclass
class Row:
    title: str


def layout(items: list[Panel | Row]) -> list[JSON]:
    """Place panels left to right in a 24-column grid; a row starts a new line."""
    rendered: list[JSON] = []
    x = y = line_height = 0
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, Row):
            if x:
                y += line_height
            x, line_height = 0, 0
            rendered.append(
                {
                    "id": panel_id,
                    "type": "row",
                    "title": item.title,
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                    "panels": [],
                }
            )
            y += 1
            continue
        width, height = item.size()
        if x + width > 24:
            x, y, line_height = 0, y + line_height, 0
        rendered.append(item.render(panel_id, x, y))
        x += width
        line_height = max(line_height, height)
    return rendered


def datasource_variable() -> JSON:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": True, "text": "Prometheus", "value": DATASOURCE_UID},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(name: str, label: str, metric: str, label_name: str) -> JSON:
    """A multi-value variable listing ``label_name`` values of ``metric``, "All" = ``.*``."""
    query = f"label_values({metric}, {label_name})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "regex": "",
        "options": [],
    }


INSTANCE_VARIABLE = query_variable("instance", "Instance", f'up{{job="{JOB}"}}', "instance")
ORGANIZATION_VARIABLE = query_variable(
    "organization",
    "Organization",
    f'active_users_total{{job="{JOB}", instance=~"$instance"}}',
    "organization_id",
)


def annotation(name: str, expr: str, title: str, text: str, color: str) -> JSON:
    return {
        "name": name,
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": color,
        "expr": expr,
        "step": "1m",
        "titleFormat": title,
        "textFormat": text,
        "tagKeys": "",
        "useValueForTime": False,
    }


def dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    panels: list[Panel | Row],
    variables: list[JSON],
    annotations: list[JSON],
    runbooks: tuple[str, ...],
) -> JSON:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [DASHBOARD_TAG],
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "refresh": "30s",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [
            {
                "title": "FaultMaven Auth dashboards",
                "type": "dashboards",
                "tags": [DASHBOARD_TAG],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "targetBlank": False,
            },
            *(
                {**runbook_link(alert), "type": "link", "icon": "doc", "tags": []}
                for alert in runbooks
            ),
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                *annotations,
            ]
        },
        "templating": {"list": variables},
        "panels": layout(panels),
    }
