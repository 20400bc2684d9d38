"""How sure a paired comparison is: its power (seeds.py) and a sequential rule that adds seeds until a
difference is settled without inflating false positives (sequential.py). Pure arithmetic (numpy, scipy)."""
