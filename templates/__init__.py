"""Troposphere building blocks of the Route Counter stack, one module per AWS concern."""
