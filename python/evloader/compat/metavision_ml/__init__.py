"""metavision_ml module paths on evloader."""
