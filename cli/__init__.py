"""The `gatekey` admin CLI: one module per command group; it calls the same services as the API."""
