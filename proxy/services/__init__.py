"""Protocol-neutral session services: gate contract and guard, statement tracking, row actions, audit and metrics."""
