"""`telltale serve`: OTLP/HTTP and OTLP/gRPC receivers in front of the store's one write path."""
