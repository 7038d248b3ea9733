"""Algorithms built only from trpo_ng's parts."""
