"""daq-bench: the receiver's frame and data rate limits, measured against baselines of the same machine."""
