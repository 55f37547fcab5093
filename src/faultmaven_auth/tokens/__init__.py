"""Signing keys, access JWTs, refresh rotation, revocation and the session endpoints."""
