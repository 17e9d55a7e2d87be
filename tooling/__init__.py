"""What starts and sets up the system on one machine, apart from what it starts.

The Tango database and Starter set-up (``daq-tango``), the demos
(``daq-demo``, ``daq-stream-demo``), the tango-simlib description of the
device, and the free-port and child-process helpers they and the tests use.
Devices, simulators and streamers never import it.
"""
