"""Peer: Django Channels with channels_redis, the same minimal contract as the Litestar peer."""
