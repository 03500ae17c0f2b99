"""Protocol-neutral sans-IO plumbing: typed events and commands, checked states, driver, playbooks."""
