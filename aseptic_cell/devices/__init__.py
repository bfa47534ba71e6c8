"""Device layer: command catalogue, backend protocol and backends (sim, OPC UA)."""
