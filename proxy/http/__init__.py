"""The HTTP side: a mitmproxy addon masking an internal API by policy (bodies.py: the pure masking)."""
