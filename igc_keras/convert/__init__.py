"""Converters from the authors' released checkpoints."""
