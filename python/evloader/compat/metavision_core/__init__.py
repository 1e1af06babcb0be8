"""metavision_core module paths on evloader."""
