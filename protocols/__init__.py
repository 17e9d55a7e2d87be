"""The wire codec that senders and the receiver share.

One module per protocol, pure functions between ZeroMQ message parts (or
files) and the frame model of :mod:`protocols.model`: the STINS stream
(:mod:`~protocols.stins`), Dectris stream v1 and v2, the SLS JSON-header
stream, bslz4 chunks, Pilatus mini-CBF files (:mod:`~protocols.cbf`). Simulators
and streamers encode with these modules and the receiver parses with them;
nothing here imports the receiver. camserver's TCP dialogue
(:mod:`~protocols.camserver`) is here for the same reason: the Pilatus
simulator, the streamer's proxy and the backend all speak it.
"""
