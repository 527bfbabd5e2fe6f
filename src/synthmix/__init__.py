"""synthmix: how the diversity of synthetic-data sources changes an LLM after fine-tuning."""

__version__ = "0.1.0"
