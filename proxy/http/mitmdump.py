"""Entry point for a stock mitmproxy: `mitmdump --mode reverse:http://api:8000 -s proxy/http/mitmdump.py
--set maskgate_config=maskgate.yaml` (mitmproxy loads this file as a script, not as a package module).

Owns nothing but the `addons` list mitmproxy looks for; the addon builds the policy, audit and
metrics services from the config file given in the `maskgate_config` option.
"""

from proxy.http.addon import MaskGate

addons = [MaskGate()]
