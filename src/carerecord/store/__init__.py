"""Persistence: resources and every version of them, search indexes, transactions.

One implementation over SQLAlchemy Core that runs on SQLite (embedded default, WAL) and
PostgreSQL (production)."""
