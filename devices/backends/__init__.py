"""Detector backends, one module per kind of hardware, imported only when chosen."""
