"""Processes started from outside a deployment: servers on free ports and `gatekey` CLI runs.

One harness for the self-test, the integration tests, the bench and `scripts/devservices.py`;
it never imports FastAPI, `service.app` or `service.api`.
"""
