"""bf16 autocast only where the hardware runs it natively; fp32 elsewhere (emulated bf16 measured 26x slower)."""
import pytest
import torch

from guardmatch.training.run import mixed_precision, native_bf16


@pytest.mark.parametrize(("avx512_bf16", "amx", "native"), [(False, False, False), (True, False, True), (False, True, True)])
def test_native_bf16_on_cpu_follows_the_cpu_flags(monkeypatch, avx512_bf16, amx, native):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert native_bf16() is native
    assert mixed_precision("bf16") == ("bf16" if native else "no")
    assert mixed_precision("fp32") == "no"

