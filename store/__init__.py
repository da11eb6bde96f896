"""Persistence adapter: TinyDB on disk, written atomically, one durable write per decision."""
