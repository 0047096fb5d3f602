"""The reliability suite: tries to break the app (faults, races, kills, outages)."""
