"""What a run writes: the typed results schema, its upgrade chain, the run store and baseline files."""
