"""The ONNX node-test suite module, and xla:cpu on a representative slice of it.

The full run (every case, every target) is ``python tools/bench_xla.py --node-suite``;
CI runs the first case of every op (op by op, ``jit=False``: one XLA compile per
case would take minutes) and all cases of the ops the built-in models use.
"""

from __future__ import annotations

import numpy as np
import pytest

from portarun_conformance.node_suite import (
    NodeCase,
    compare_value,
    load_node_cases,
    op_type_of,
    run_node_suite,
)

# Ops with no XLA lowering yet, and why. Their cases error with a CompileError that
# lists them; test_unsupported_list_is_honest keeps this list true.
XLA_UNSUPPORTED = {
    "strings (XLA has no string type)": ["RegexFullMatch", "StringConcat", "StringNormalizer", "StringSplit",
                                         "TfIdfVectorizer"],
    "image decoding on the host": ["ImageDecoder"],
    "training ops (preview.training domain)": ["Adagrad", "Adam", "Momentum"],
    "not written yet": ["DeformConv", "MelWeightMatrix", "RoiAlign", "STFT"],
}

# Cases of supported ops that fail, and why (random draws cannot match NumPy's generator, ...).
XLA_KNOWN_FAILURES = {
    "test_bernoulli", "test_bernoulli_double", "test_bernoulli_seed",  # different RNG than NumPy's
    "test_bernoulli_expanded", "test_bernoulli_double_expanded", "test_bernoulli_seed_expanded",
    "test_training_dropout", "test_training_dropout_default", "test_training_dropout_mask",
    "test_training_dropout_default_mask",  # random masks
    "test_maxunpool_export_with_output_shape",  # explicit output_shape padding differs
    "test_dynamicquantizelinear",  # one value rounds the other way
    "test_flexattention",  # its function body needs graph-valued attributes
    "test_bitcast_bool_to_uint8", "test_dft_irfft", "test_dft_irfft_opset19",
}


def _unsupported() -> set[str]:
    return {op for ops in XLA_UNSUPPORTED.values() for op in ops}


def test_cases_are_generated_from_the_installed_onnx():
    cases = load_node_cases(["Add", "Gemm"])
    assert cases and all(isinstance(c, NodeCase) for c in cases)
    assert {c.op_type for c in cases} == {"Add", "Gemm"}
    case = next(c for c in cases if c.name == "test_add")
    assert case.model.graph.node[0].op_type == "Add"
    assert isinstance(case.inputs[0], np.ndarray) and isinstance(case.outputs[0], np.ndarray)
    assert set(case.feeds()) == {"x", "y"}
    assert len(load_node_cases()) > 1800


def test_op_type_of_prefers_the_longest_op_name():
    cases = load_node_cases(names=["test_reduce_sum_square_default_axes_keepdims_example"])
    assert op_type_of(cases[0].name, cases[0].model) == "ReduceSumSquare"


def test_compare_value_checks_dtype_shape_and_tolerance():
    a = np.array([1.0, 2.0], np.float32)
    assert compare_value(a, a.copy(), 1e-3, 1e-5) is None
    assert "dtype" in compare_value(a.astype(np.float64), a, 1e-3, 1e-5)
    assert "shape" in compare_value(a[:1], a, 1e-3, 1e-5)
    assert "values off" in compare_value(a + 0.1, a, 1e-3, 1e-5)
    assert compare_value([a, a], [a, a], 1e-3, 1e-5) is None


def test_reference_and_onnxruntime_run_through_the_public_api():
    cases = load_node_cases(["Relu", "Softmax", "Gemm"])
    for target in ("reference:cpu", "onnxruntime:cpu"):
        result = run_node_suite(target, cases)
        assert result.counts["total"] == len(cases)
        assert result.passed >= len(cases) - 2, result.by_status("error") + result.by_status("fail")
        assert set(result.per_op()) == {"Relu", "Softmax", "Gemm"}


def _representative() -> list[NodeCase]:
    """The first case of every op, plus the first function-expanded case of every op that has one."""
    first: dict[tuple[str, bool], NodeCase] = {}
    for case in load_node_cases():
        first.setdefault((case.op_type, case.name.endswith("_expanded")), case)
    return sorted(first.values(), key=lambda c: c.name)


def test_xla_passes_the_representative_slice():
    pytest.importorskip("jax")
    cases = _representative()
    result = run_node_suite("xla:cpu", cases, options={"jit": False})
    unsupported = _unsupported()
    unexpected = [r for r in result.results
                  if r.status in ("fail", "error") and r.op_type not in unsupported
                  and r.name not in XLA_KNOWN_FAILURES]
    assert not unexpected, "\n".join(f"{r.name}: {r.reason}" for r in unexpected)
    assert result.passed >= 0.8 * len(cases)


def test_unsupported_list_is_honest():
    pytest.importorskip("jax")
    from portarun_backends.xla.backend import missing_ops

    import portarun

    lowered = []
    for op_type in sorted(_unsupported()):
        cases = [c for c in load_node_cases([op_type]) if not c.name.endswith("_expanded")]
        assert cases, f"no node cases test {op_type}"
        model = portarun.Model.from_proto(cases[0].model, check=False)
        if not any(m.split("::")[-1] == op_type for m in missing_ops(model)):
            lowered.append(op_type)
    assert not lowered, f"these have a lowering now, remove them from XLA_UNSUPPORTED: {lowered}"


def test_sample_covers_every_op_type_with_at_most_two_cases_each():
    from collections import Counter

    from portarun_conformance.node_suite import SAMPLE_PER_OP, load_node_cases

    every = load_node_cases()
    sample = load_node_cases(sample=True)
    per_op = Counter(c.op_type for c in sample)
    assert set(per_op) == {c.op_type for c in every}
    assert max(per_op.values()) <= SAMPLE_PER_OP and len(sample) < len(every) / 3
    assert [c.name for c in load_node_cases(sample=True)] == [c.name for c in sample]  # stable


def test_node_suite_mode_follows_what_was_asked():
    from portarun import UsageError
    from portarun_conformance import ConformanceConfig

    assert ConformanceConfig().node_suite_mode == "sample"  # the main job
    assert ConformanceConfig(models=["builtin:mlp"]).node_suite_mode == "off"  # `conformance MODEL`
    assert ConformanceConfig(models=["builtin:mlp"], node_suite="full").node_suite_mode == "full"
    assert ConformanceConfig(node_ops=["Relu"]).node_suite_mode == "full"
    assert ConformanceConfig(suite="models").node_suite_mode == "off"
    with pytest.raises(UsageError, match="node-suite mode"):
        ConformanceConfig(node_suite="some")
