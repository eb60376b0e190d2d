"""telltale: turn raw telemetry into the story of what a system did."""

__version__ = "0.1.0"
