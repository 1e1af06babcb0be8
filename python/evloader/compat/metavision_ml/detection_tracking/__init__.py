"""metavision_ml.detection_tracking."""
