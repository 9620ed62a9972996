"""Plain domain values and errors, imported by ``cache`` and ``service`` alike; imports neither."""
