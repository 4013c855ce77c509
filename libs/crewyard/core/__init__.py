"""The pure domain core: events, state machines, subjects, ids, crew configuration.

Imports no nats, aiosqlite, docker or Litestar; its tests need no event loop and no server.
"""
