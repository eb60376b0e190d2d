"""Analyses: pure functions of (store, time window, parameters) returning typed results."""
