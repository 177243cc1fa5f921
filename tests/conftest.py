import pytest
import torch

from trainattn.testing import tiny_llama, tiny_tokenizer


def pytest_configure(config):
    # tiny models: one thread is faster, and stays fast when the machine is busy
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def model(tokenizer):
    return tiny_llama(len(tokenizer), seed=0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
