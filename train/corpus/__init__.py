"""The embedded task corpus: parameterised Verilog task families, verified by the reward core.

- :func:`load_split` returns the committed default split (``train`` | ``val`` | ``test``);
- :func:`load_task_file` reads users' JSONL / parquet / saved HF-dataset task files, validating
  every record;
- ``python -m train.corpus generate --out DIR --seed S --size N`` regenerates a corpus;
  ``python -m train.corpus verify FILE`` re-checks its goldens and mutants.
"""

from train.corpus.loader import DATA_DIR, CorpusFileError, load_split, load_task_file

__all__ = ["DATA_DIR", "CorpusFileError", "load_split", "load_task_file"]
