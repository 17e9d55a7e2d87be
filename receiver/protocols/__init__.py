"""Wire protocols: pure functions between ZeroMQ message parts and the receiver's frame model."""
