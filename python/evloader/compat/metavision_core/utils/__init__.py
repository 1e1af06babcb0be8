"""``metavision_core.utils`` (get_sample arrives with the samples)."""
