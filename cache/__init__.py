"""Redis schema, atomic writes and the in-memory replica the check path reads from."""
