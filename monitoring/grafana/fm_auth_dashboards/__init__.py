"""The FaultMaven Auth Grafana dashboards as Python: one module per dashboard.

``kit`` builds Grafana's JSON model from plain dicts, ``queries`` holds the PromQL the
dashboards share, ``shared`` the panels more than one dashboard shows.
"""

from __future__ import annotations

from .business import business
from .infrastructure import infrastructure
from .kit import JSON
from .overview import overview
from .performance import performance
from .security import security


def build_dashboards() -> dict[str, JSON]:
    """File name (without ``.json``) -> dashboard model."""
    return {
        "overview": overview(),
        "performance": performance(),
        "business": business(),
        "infrastructure": infrastructure(),
        "security": security(),
    }
