"""The built-in self-test: the integration checklist (README: Self-test) run against a
deployment, ending in a Go/No-Go verdict. It talks to the deployment from outside (HTTP,
the CLI, SQL, Redis)."""
