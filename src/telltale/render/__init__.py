"""Rendering: typed results → terminal tables, JSON, CSV. No analysis logic here."""
