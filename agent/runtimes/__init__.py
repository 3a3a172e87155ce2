"""TFLite runtimes: the interpreter backends, the layer chain, the in-situ profiler."""
