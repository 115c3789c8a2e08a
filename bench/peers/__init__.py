"""Peer model servers that log nothing, serving the same Watchkeeper pipeline.

They run from their own virtual environments under ``var/bench-peers/`` (see
:mod:`bench.peers.install`); they are not Watchkeeper dependencies.
"""
