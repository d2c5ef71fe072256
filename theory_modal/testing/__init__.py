"""Test helpers that other services' test suites can use too: loopback fakes of the remote side."""
