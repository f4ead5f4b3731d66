"""HTTP endpoints: the workflow webhook, the REST reads and admin calls, health, the dashboard page, error mapping."""
