"""Markers that the upstream test files use (declared here because this project runs pytest with --strict-markers)."""

_UPSTREAM_MARKERS = [
    "accelerate_tests: transformers' tests of accelerate integration",
    "flash_attn_test: transformers' flash-attention tests (need a GPU and flash-attn)",
    "flash_attn_3_test: transformers' flash-attention 3 tests",
    "flash_attn_4_test: transformers' flash-attention 4 tests",
    "all_flash_attn_test: transformers' tests of all flash attentions",
    "torch_compile_test: transformers' torch.compile tests",
    "generate: transformers' generation tests",
    "is_training_test: transformers' training tests",
]


def pytest_configure(config):
    for marker in _UPSTREAM_MARKERS:
        config.addinivalue_line("markers", marker)
