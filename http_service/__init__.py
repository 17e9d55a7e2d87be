"""HTTP services run inside a host process: uvicorn in a thread of its own.

A package of its own because the receiver's API and the simulators both serve
HTTP from a background thread, and the simulators may not import the receiver.
"""
