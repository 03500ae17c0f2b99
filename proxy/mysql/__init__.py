"""MySQL/MariaDB client/server protocol: wire packets, framing, errors and value types for the proxy."""
