"""Drift detection on the memory stream, in river's protocol and with no Kafka or torch: hashed
content-word features, the KL detector over a sliding window, the surprise of each event under the
baseline, the threshold's calibration and the report an alert carries."""
