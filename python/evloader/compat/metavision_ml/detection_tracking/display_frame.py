"""``metavision_ml.detection_tracking.display_frame``."""
from evloader.viz import draw_box_events  # noqa: F401
