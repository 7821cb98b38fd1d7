"""Proving an export: runners, gate inputs, comparison, the gate and layerwise localisation."""
