import os
from pathlib import Path

import pytest
import torch

from trainattn.testing import tiny_llama, tiny_tokenizer

# The real LAMA-CKL / TemporalWiki files: $TRAINATTN_DATA, else the shared copy beside the project
# (../shared/data), so the README's test command runs every test where that copy exists.
_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not os.environ.get("TRAINATTN_DATA") and _SHARED_DATA.is_dir():
    os.environ["TRAINATTN_DATA"] = str(_SHARED_DATA)


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
