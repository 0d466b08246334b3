"""Launching runs: Slurm jobs, sweeps (Slurm arrays), evaluations, and the same topology on one machine.

``python -m launch slurm|sweep|evals|local ...``; see ``launch/cli.py`` and ``launch/README.md``.
This package only starts processes: it imports nothing else of rtlforge.
"""
