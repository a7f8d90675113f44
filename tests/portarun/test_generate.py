"""portarun.generate: greedy tokens equal a cache-free recompute, agree across backends, count exactly."""

import numpy as np
import pytest

import portarun
from portarun import models
from portarun.errors import BackendUnavailableError, CompileError, InputError, UnsupportedError, UsageError
from portarun.generate import GenerationResult, static_capacity

PROMPT = np.array([[3, 141, 59, 26, 5, 35, 89, 79]])
NEW = 24


@pytest.fixture(scope="module")
def tiny():
    return models.build("decoder-tiny")


@pytest.fixture(scope="module")
def ort(tiny):
    with portarun.compile(tiny, "onnxruntime:cpu") as executable:
        yield executable


@pytest.fixture(scope="module")
def ort_tokens(ort):
    return portarun.generate(ort, PROMPT, NEW).tokens


def greedy_without_cache(exe, prompt, new):
    """Recompute the whole sequence each step (past length 0): what the cache must reproduce."""
    ids = np.array(prompt)
    empty = {s.name: np.zeros((ids.shape[0], s.shape[1], 0, s.shape[3]), np.float32)
             for s in exe.inputs if s.name.startswith("past_key_values.")}
    for _ in range(new):
        n = ids.shape[1]
        logits = exe.run({"input_ids": ids, "position_ids": np.broadcast_to(np.arange(n), ids.shape).copy(),
                          "attention_mask": np.ones_like(ids), **empty})["logits"]
        ids = np.concatenate([ids, logits[:, -1].argmax(-1)[:, None]], axis=1)
    return ids[:, prompt.shape[1]:]


def test_cached_generation_equals_recomputing_the_sequence(ort, ort_tokens):
    np.testing.assert_array_equal(ort_tokens, greedy_without_cache(ort, PROMPT, NEW))
    assert len(set(ort_tokens[0].tolist())) > 3  # not a degenerate constant stream


def test_static_cache_gives_the_same_tokens_with_fixed_shapes(ort, ort_tokens):
    shapes = []
    original = ort.run

    def spy(feeds, **kwargs):
        shapes.append((feeds["input_ids"].shape, feeds["past_key_values.0.key"].shape))
        return original(feeds, **kwargs)

    ort.run = spy
    try:
        result = portarun.generate(ort, PROMPT, NEW, cache="static", bucket=16)
    finally:
        del ort.run
    np.testing.assert_array_equal(result.tokens, ort_tokens)
    assert result.capacity == static_capacity(PROMPT.shape[1] + NEW - 1, 16) == 32
    assert len(set(shapes)) == 2  # one prefill shape and one decode shape: no per-token recompilation
    assert all(past[2] == 32 for _, past in shapes)


@pytest.mark.parametrize("target", ["reference", "openvino:cpu", "xla:cpu"])
def test_same_greedy_tokens_on_every_cpu_backend_at_fp32(tiny, ort_tokens, target):
    try:
        exe = portarun.compile(tiny, target, "fp32")
    except BackendUnavailableError as exc:
        pytest.skip(f"{target} unavailable here: {exc}")
    except (UnsupportedError, CompileError) as exc:
        if "lowering" not in str(exc) and "lower" not in str(exc):
            raise
        pytest.skip(f"{target} cannot lower the decoder yet: {exc}")
    # XLA compiles per input shape: only the static cache (two shapes) is its mode; a dynamic
    # cache would compile once per token.
    caches = ("static",) if target.startswith("xla") else ("dynamic", "static")
    with exe:
        for cache in caches:
            result = portarun.generate(exe, PROMPT, NEW, cache=cache)
            np.testing.assert_array_equal(result.tokens, ort_tokens, err_msg=f"{target} {cache} cache")


def test_batch_rows_are_independent(ort, ort_tokens):
    other = np.array([[7, 7, 200, 1, 0, 13, 250, 9]])
    single = portarun.generate(ort, other, NEW).tokens
    batched = portarun.generate(ort, np.concatenate([PROMPT, other]), NEW, cache="static")
    np.testing.assert_array_equal(batched.tokens, np.concatenate([ort_tokens, single]))
    assert batched.generated_tokens == 2 * NEW and batched.batch == 2


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_the_first_steps_feeds_are_checked_and_later_ones_trusted(ort, ort_tokens, cache):
    """A spy around a real executable (plumbing only): generate checks the prefill's feeds against the
    signature, then builds every later step alike and skips the check (it cost ~0.1 ms of a 4 ms step);
    the tokens are those of a fully checked run."""
    seen = []

    class Spy:
        def __getattr__(self, name):
            return getattr(ort, name)

        def run(self, feeds, *, check=True, tails=None):
            seen.append(check)
            return ort.run(feeds, check=True, tails=tails)  # checked anyway: a later feed the loop built wrong would fail

    tokens = portarun.generate(Spy(), PROMPT, NEW, cache=cache).tokens
    assert seen == [True] + [False] * (NEW - 1)
    np.testing.assert_array_equal(tokens, ort_tokens)


def test_timings_and_exact_token_counts(ort):
    result = portarun.generate(ort, PROMPT[0].tolist(), 10)
    assert isinstance(result, GenerationResult)
    assert result.tokens.shape == (1, 10) and result.generated_tokens == 10
    assert result.prompt_tokens == 8 and result.decode_steps == 9 and len(result.step_s) == 9
    assert result.ttft_s > 0 and all(s > 0 for s in result.step_s)
    assert result.tpot_p99_s >= result.tpot_median_s > 0
    assert result.decode_tokens_per_s == pytest.approx(9 / sum(result.step_s))
    summary = result.summary()
    assert summary["generated_tokens"] == 10 and summary["decode_steps"] == 9


def test_eos_stops_each_sequence_and_is_counted_once(ort, ort_tokens):
    eos = int(ort_tokens[0, 4])
    first = int(np.argmax(ort_tokens[0] == eos))  # first occurrence, at or before index 4
    result = portarun.generate(ort, PROMPT, NEW, eos_token_id=eos)
    assert result.tokens.shape == (1, first + 1) and result.tokens[0, -1] == eos
    assert result.generated_tokens == first + 1


def test_quantized_decoders_generate_the_same_tokens_on_ort_and_reference(tiny):
    quantize = pytest.importorskip("portarun.quantize", reason="portarun.quantize is not available")
    for precision in ("int8-weight", "int4-weight"):
        quantized = quantize.quantize(tiny, precision, dims={"seq": 8, "past_seq": 0, "total_seq": 8}).model
        tokens = {}
        # ORT fuses DequantizeLinear+MatMul into MatMulNBits with int8 activations unless asked for
        # accuracy level 0; with it, ORT computes what the QDQ graph says, as the reference does.
        exact = {"onnxruntime:cpu": {"session_config": {"session.qdq_matmulnbits_accuracy_level": "0"}},
                 "reference": {}}
        for target, options in exact.items():
            with portarun.compile(quantized, target, precision, **options) as exe:
                tokens[target] = portarun.generate(exe, PROMPT, 12).tokens
        np.testing.assert_array_equal(tokens["onnxruntime:cpu"], tokens["reference"], err_msg=precision)


def test_bad_requests_fail_clearly(ort):
    with portarun.compile("mlp", "onnxruntime:cpu") as mlp:
        with pytest.raises(InputError, match="not a KV-cache decoder"):
            portarun.generate(mlp, PROMPT, 4)
    with pytest.raises(UsageError, match="cache mode"):
        portarun.generate(ort, PROMPT, 4, cache="paged")
    with pytest.raises(InputError, match=r"in \[0, 256\)"):
        portarun.generate(ort, [[1, 2, 999]], 4)
    with pytest.raises(InputError, match="integer token ids"):
        portarun.generate(ort, np.zeros((1, 0), np.int64), 4)
    with pytest.raises(UsageError, match="cannot hold"):
        portarun.generate(ort, PROMPT, 20, cache="static", capacity=16)
    with pytest.raises(UsageError, match="at least 1"):
        portarun.generate(ort, PROMPT, 0)


def test_forced_logits_predict_the_greedy_sequence_at_every_position(ort, ort_tokens):
    """Teacher forcing on the greedy output: the argmax at prompt-1+t is the t-th greedy token, for both caches."""
    from portarun.generate import forced_logits

    sequence = np.concatenate([PROMPT, ort_tokens], axis=1)
    start = PROMPT.shape[1] - 1
    dynamic = forced_logits(ort, sequence, cache="dynamic")
    static = forced_logits(ort, sequence, cache="static", bucket=16)
    assert dynamic.shape == (1, sequence.shape[1], ort.outputs[0].shape[-1])
    np.testing.assert_array_equal(dynamic[0, start:start + NEW].argmax(-1), ort_tokens[0])
    np.testing.assert_allclose(static, dynamic, rtol=1e-4, atol=1e-4)


def test_forced_logits_refuse_ids_outside_the_vocabulary(ort):
    from portarun.generate import forced_logits

    with pytest.raises(InputError, match="token ids must be in"):
        forced_logits(ort, np.array([[1, 2, 10**6]]))
    with pytest.raises(UsageError, match="unknown cache mode"):
        forced_logits(ort, PROMPT, cache="paged")


def test_next_token_agreement_counts_equal_argmaxes_with_an_interval():
    from portarun.generate import next_token_agreement

    rng = np.random.default_rng(0)
    reference = rng.standard_normal((40, 50)).astype(np.float32)
    other = reference.copy()
    flipped = [3, 17, 31]
    for position in flipped:  # make another token the argmax at three positions
        other[position, (reference[position].argmax() + 1) % 50] = reference[position].max() + 1.0
    result = next_token_agreement(reference, other)
    assert result["next_token_agreement"] == pytest.approx(37 / 40)
    low, high = result["next_token_agreement_ci95"]
    assert low < 37 / 40 < high <= 1.0
    top2 = np.sort(reference, axis=-1)[:, -2:]
    assert result["reference_top1_margin_median"] == pytest.approx(float(np.median(top2[:, 1] - top2[:, 0])))
    assert next_token_agreement(reference, reference)["next_token_agreement"] == 1.0
    with pytest.raises(UsageError, match="one shape"):
        next_token_agreement(reference, other[:-1])
