"""Show package code inside a notebook, so readers on Jupyter or Colab see what the book shows.

The rendered book includes source with Sphinx's ``literalinclude :pyobject:``; those directives do
not render in Jupyter, so chapters also call :func:`show_source`, which prints the same code.

Book: CONTRIBUTING.md, "The chapter checklist".
"""
from __future__ import annotations

import inspect


def source_of(obj) -> str:
    """The source code of a function, class or module, as a string."""
    try:
        return inspect.getsource(obj)
    except (TypeError, OSError) as e:
        raise TypeError(f"cannot show the source of {obj!r}: {e}") from e


def show_source(obj) -> None:
    """Display the source of ``obj`` as a highlighted code block (plain text outside IPython)."""
    text = source_of(obj)
    try:
        from IPython.display import Markdown, display
    except ImportError:  # plain Python: print it
        print(text)
        return
    display(Markdown(f"```python\n{text}```"))
