"""HTTP layer: dependencies, problem+json error mapping, health endpoints, router assembly."""
