"""`make bench`: gatekey's request path under wrk, beside a bare and a slowapi endpoint."""
