"""Tests of the management commands that have grown past a few cases each."""
