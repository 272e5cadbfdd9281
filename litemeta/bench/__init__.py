"""Benchmarks of LITE meta-training (Bronskill et al., "Memory Efficient Meta-Learning with
Large Images", NeurIPS 2021): memory and time of a meta-training step against support size,
fidelity of the gradient estimate, and the cost of personalising to a new task.

Each benchmark writes a CSV, a markdown table and a PNG plot; ``litemeta bench ...`` runs
them from the command line.
"""
