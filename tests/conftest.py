"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with one intra-op thread, then restore the setting.

    With several intra-op threads on a machine whose cores are busy (pytest, spawned workers),
    tiny convolutions spend their time spinning on each other: seconds per batch instead of
    milliseconds.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=[0o022], ids=lambda m: f"umask{m:03o}")
def umask(request):
    """Run a test under ``request.param`` as the umask (default 0o022), then restore the old one."""
    import os

    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.fixture
def torch_loads(monkeypatch):
    """Every file ``torch.load`` reads during the test, in order (the loads still happen)."""
    calls = []
    real = torch.load

    def load(f, *args, **kwargs):
        calls.append(f)
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    return calls
