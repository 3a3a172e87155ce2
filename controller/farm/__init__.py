"""Talking to the farm: agent client, local agents, sweeps and their runner."""
