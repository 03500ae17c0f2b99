"""MySQL/MariaDB wire protocol: sans-IO packets, login and relay."""
