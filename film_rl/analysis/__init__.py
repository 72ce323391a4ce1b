"""The learned FiLM parameters as a task representation: projections, interpolation, analogies."""
