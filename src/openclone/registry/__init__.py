"""The model registry: immutable versions with lineage, aliases, gated promotion, rollback."""
