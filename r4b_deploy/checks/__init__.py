"""Smoke checks of a running endpoint and their report writers (table, JSON, JUnit)."""
