"""Fault-injection tests: a recorded workload, a nemesis and history checkers on real broker processes."""
