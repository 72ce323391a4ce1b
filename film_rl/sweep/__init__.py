"""Many runs: sweeps over settings and seeds (locally or on Ray) and their reports."""
