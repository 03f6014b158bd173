"""Training benchmarks: each module runs with `python -m training.benchmarks.NAME` and prints
one JSON object; docs/ quotes the figures with the command that produced them."""
