"""tools/numerics_matrix.py: each configuration runs in the environment it names, with its own inductor cache."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("numerics_matrix", ROOT / "tools" / "numerics_matrix.py")
numerics_matrix = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(numerics_matrix)


def test_the_matrix_holds_what_issue_13_asks_for():
    """native, portable kernels, AVX2 with MKL's AVX2 path, two threads, and seeds 1 to 4."""
    env = {name: numerics_matrix.CONFIGS[name][0] for name in numerics_matrix.MATRIX}
    assert env["default"] == {"ATEN_CPU_CAPABILITY": "default"}
    assert env["avx2"] == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    assert env["threads2"] == {"OMP_NUM_THREADS": "2"}
    assert [env[f"seed{k}"] for k in range(1, 5)] == [{"MATHLLM_SEED": str(k)} for k in range(1, 5)]
    assert "ci" not in numerics_matrix.MATRIX


def test_each_configuration_sets_its_environment_over_the_callers():
    base = {"PATH": "/bin", "MATHLLM_SEED": "7", "OMP_NUM_THREADS": "8"}
    env = numerics_matrix.environment("seed2", base)
    assert env["PATH"] == "/bin" and env["MATHLLM_SEED"] == "2"
    assert env["OMP_NUM_THREADS"] == "1"                            # one BLAS thread per pytest worker
    assert numerics_matrix.environment("threads2", base)["OMP_NUM_THREADS"] == "2"
    assert numerics_matrix.environment("native", base) == {**base, "OMP_NUM_THREADS": "1"}


def test_kernel_paths_never_share_an_inductor_cache():
    """Kernels compiled under one ATEN_CPU_CAPABILITY and loaded under another gave NaN losses and a heap
    corruption abort in the compiled-training test: every non-native configuration compiles into its own
    cache, and native keeps the one `make test` fills."""
    base = {"PATH": "/bin"}
    caches = {name: numerics_matrix.environment(name, base).get("TORCHINDUCTOR_CACHE_DIR")
              for name in numerics_matrix.CONFIGS}
    assert caches["native"] is None
    others = [c for name, c in caches.items() if name != "native"]
    assert all(others) and len(set(others)) == len(others)
