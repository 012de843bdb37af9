"""Benchmarks of synthviz against sae_lens at the SynthSAEBench-16k config (`python -m benchmarks.run`)."""
