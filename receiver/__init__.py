"""The detector-agnostic stream-receiver: ZeroMQ workers, ordering, HDF5 writing, forwarding."""
