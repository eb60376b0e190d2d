"""Decode every input format into the staging model; validation rules live in the store's SQL."""
