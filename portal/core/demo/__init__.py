"""`make demo` in parts: the processes it runs (stack.py, on portal/core/supervise.py)
and what it does in them as the consortium's people would (scenario.py). The
`demo` management command wires the two and shows progress."""
