"""Everything gatekey keeps in Redis: the client factory, key and channel names, Lua scripts.

Import from the modules (`client`, `keyspace`, `scripts`); the `.lua` files ship as package data.
"""
