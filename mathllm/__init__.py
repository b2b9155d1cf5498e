"""mathllm: the mathematics of large language models, derived, implemented and verified.

One module per concept, in the book's reading order; see the API reference in the book.
"""
__version__ = "0.1.0"
