"""Benchmarks of LITE meta-training (Bronskill et al., "Memory Efficient Meta-Learning with
Large Images", NeurIPS 2021): memory and time of a meta-training step against support size,
fidelity of the gradient estimate, the cost of personalising to a new task, and the rate at
which the data pipeline delivers tasks.

Each benchmark writes a markdown table and its raw numbers (CSV and a PNG plot, or JSON);
``litemeta bench ...`` runs them from the command line.
"""
