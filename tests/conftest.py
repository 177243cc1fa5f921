import pytest
import torch

from trainattn.tiny import tiny_llama, tiny_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def model(tokenizer):
    return tiny_llama(len(tokenizer), seed=0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
