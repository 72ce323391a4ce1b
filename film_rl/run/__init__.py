"""One training run: its directory, training, resume, evaluation, callbacks and logging."""
