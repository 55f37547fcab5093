"""Just enough PromQL reading for the dashboard tests: variables and metric names.

Grafana replaces its variables before a query reaches Prometheus; ``substitute`` does the
same with fixed values. ``metric_names`` lists the series names a query selects, so the
test can hold them against what the service really exports.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

# What Grafana would send for each variable: "All" of a multi-value variable is ".*".
GRAFANA_VALUES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
    "instance": ".*",
    "organization": ".*",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str) -> str:
    """``expr`` with every ``$var`` / ``${var}`` replaced; KeyError for an unknown one."""
    return _VARIABLE.sub(lambda m: GRAFANA_VALUES[m.group(1) or m.group(2)], expr)


_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])([a-zA-Z_:][\w:]*)")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "Inf", "NaN", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """Series names selected by ``expr`` (functions, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("{}", text)
    text = _RANGE.sub("[]", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(1)
        if name in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # an operator, or a function / aggregation call
        names.add(name)
    return names


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, label matchers) of each ``name{...}`` in ``expr``."""
    return re.findall(r"(?<![\w:])([a-zA-Z_:][\w:]*)\{([^}]*)\}", expr)


def exported_names(exposition: str) -> set[str]:
    """Every series name a scrape of this text yields, with histogram and counter suffixes.

    The parser reports a counter's family without ``_total`` and a histogram's without
    ``_bucket``/``_sum``/``_count``; families that have no sample yet (a labelled counter
    never incremented) still count, as their names are registered API.
    """
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type in ("histogram", "gaugehistogram"):
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif family.type == "summary":
            names.update(f"{family.name}{suffix}" for suffix in ("_sum", "_count"))
    return names
