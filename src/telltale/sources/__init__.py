"""Where telemetry comes from: files, directories, globs, stdin (servers and samplers later)."""
