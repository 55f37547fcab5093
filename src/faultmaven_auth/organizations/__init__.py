"""Tenants, invitations and teams."""
