"""guardmatch: semi-supervised training of small, fast LLM-safety classifiers."""

from guardmatch.data.example import HARMFUL, LABEL_NAMES, UNHARMFUL, Example, Task

__version__ = "0.1.0"

__all__ = ["Example", "Task", "HARMFUL", "UNHARMFUL", "LABEL_NAMES", "__version__"]
