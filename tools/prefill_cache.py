"""Execute the book's notebooks two at a time into Jupyter Book's cache, before `jupyter-book build`.

Jupyter Book 1 executes notebooks one after another; on two cores that leaves one idle. This fills
the jupyter-cache that Jupyter Book reads (`_build/.jupyter_cache`, with `execute_notebooks: cache`)
using jupyter-cache's own parallel executor, so the build then finds every notebook executed.
`make book` always starts from an empty `_build`, so the cache can never hold outputs of an older
package. A notebook that fails here is not cached; the build then runs it again and fails with `-W`.

Usage: python tools/prefill_cache.py notebooks/*.ipynb
"""
import logging
import sys

from jupyter_cache import get_cache
from jupyter_cache.executors import load_executor


def main(paths: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache = get_cache("_build/.jupyter_cache")  # the path Jupyter Book 1 uses by default
    for path in paths:
        cache.add_nb_to_project(path)
    result = load_executor("local-parallel", cache, logger=logging.getLogger("prefill")).run_and_cache(timeout=900)
    print(f"prefill: {len(result.succeeded)} executed, {len(result.errored)} errored, {len(result.excepted)} excepted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
