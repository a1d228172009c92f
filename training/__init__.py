"""Model, stage split, data schedule and stage compute engine (filled in by the pipeline work)."""
