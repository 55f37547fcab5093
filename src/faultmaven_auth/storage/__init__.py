"""Relational storage (SQLAlchemy 2 async + Alembic) and the key-value store."""
