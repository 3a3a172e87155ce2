"""joulefarm device agent: gRPC service, runtimes, meters and the model toolkit."""
