"""Telemetry in one place: request context, logging and request middleware."""
