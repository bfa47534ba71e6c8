"""aseptic_cell: supervisory control for a robotic, closed-system ATMP manufacturing cell."""

__version__ = "0.1.0"
