"""Domain models and enums: what an audience is, independent of storage and wire formats."""
