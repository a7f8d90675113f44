"""Names vulture reports as unused that are used, by something it cannot see (read by `vulture`, never run).

Settings (paths, --min-confidence 60, ignored decorators) are in pyproject.toml's [tool.vulture]. Add a name
here only when the user is outside the scanned code (an SDK, Python itself, a serializer, the tests) and
say which; remove the code instead when nothing uses it.
"""

# SDK option objects: set here, read by the SDK (onnxruntime.SessionOptions, tensorrt.IBuilderConfig)
_.optimized_model_filepath
_.graph_optimization_level
_.inter_op_num_threads
_.log_severity_level
_.builder_optimization_level

# tensorrt.IOutputAllocator hooks, called by TensorRT with its own signature (backends/tensorrt/runtime.py)
_.reallocate_output
_.reallocate_output_async
_.notify_shape
memory
alignment

# click.Group hooks, called by click (portarun/cli/__init__.py)
_.list_commands
_.get_command

# Python itself: the module __getattr__ hook (PEP 562), the callable-module trick, exception chaining
__getattr__
_.__class__
_.__cause__

# dataclass fields of result objects: written to JSON/reports by asdict(), read by users
_.joules_per_run
_.mean_ms
_.min_ms
_.max_ms
_.peak_memory_bytes
_.samples_ms
_.energy_usd_per_million
_.capital_usd_per_million
_.bytes_per_pass
_.fallback_steps
_.tpot_p99_ms  # portarun.plan Candidate: in the plan JSON (plan.schema.json)
_.energy_j_per_run  # portarun.plan Candidate: in the plan JSON
_.meets_floor  # portarun.plan CascadePoint: in the plan JSON, read by the tests
_.per_replica_requests_per_s  # portarun.plan Replicas: in the plan JSON and its summary line
_.monthly_usd  # portarun.plan Replicas: in the plan JSON and its summary line

# public helpers called only by the tests that pin their behaviour
_.by_status  # conformance NodeSuiteResult: tests/conformance/test_node_suite.py
_.unregister  # portarun.registry: tests/portarun/test_registry.py (test plugins)
_.is_dynamic  # portarun.types.TensorSpec: tests/portarun/test_types.py
lower_int4_matmuls  # backends/onnxruntime/lowering.py: tests/backends/onnxruntime/test_lowering.py
profile_from_dict  # backends/tensorrt/profiles.py, inverse of profile_to_dict: tests/backends/tensorrt

# Triton's python backend loads portarun/serve/triton_python_model.py (copied as 1/model.py) and calls these
TritonPythonModel
_.initialize
_.execute
_.finalize

# portarun.serve.triton.TritonExport: the written config text, for callers (tests/portarun/serve/test_triton.py)
_.config_text

# called by Python or click, not by our code
__dir__  # portarun/__init__.py: module __dir__ (PEP 562), lists the lazily loaded names
_.format_commands  # portarun/cli/__init__.py LazyGroup: click calls it to list the commands in --help

# dataclass fields written for the JSON report (asdict/to_dict) and read by its consumers (plan --from, schema,
# markdown), not by attribute access: conformance/decode_cost.py DecodeCostRow, portarun/benchmark/decode.py DecodeSpeed
_.tokens_equal_to_fp32
_.logits_cosine_to_fp32
_.next_token_agreement_ci95
_.bytes_per_step
_.price_basis
_.price_source
_.price_date
_.hardware_profile
_.same_tokens_every_repeat
_.tokens_per_s_each_repeat
