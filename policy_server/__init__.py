"""policy_server: the zerorpc service around a loaded UWM checkpoint (handshake, validation, auth,
batching, timing); `policy_server serve|bench` (see `policy_server.cli`)."""
