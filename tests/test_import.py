"""`import dfdc_fast` must work with no extension, no DALI, no PyNvVideoCodec, no GPU."""
import subprocess
import sys
import textwrap

import pytest

BLOCK = textwrap.dedent("""
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in ("dfdc_fast._C", "PyNvVideoCodec") or name == "nvidia.dali" or name.startswith("nvidia.dali."):
                raise ImportError(f"blocked {name}")
    sys.meta_path.insert(0, Block())
""")


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_import_without_optional_pieces():
    r = run("""
        import dfdc_fast, dfdc_fast.io, dfdc_fast.data, dfdc_fast.ops, dfdc_fast.detect, dfdc_fast.track, dfdc_fast.probe, dfdc_fast.extract, dfdc_fast.bench
        from dfdc_fast.extension import _has_ops
        assert not _has_ops()
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


@pytest.mark.parametrize("call, expected", [
    ("from dfdc_fast.track import label3d; import torch; label3d(torch.zeros(2, 2, 2))", "scripts/setup.sh"),
    ("from dfdc_fast.io import open_reader; open_reader('dali', 'cpu')", "pip install nvidia-dali"),
    ("from dfdc_fast.io.nvdec import import_pynvvideocodec; import_pynvvideocodec()", "pip install pynvvideocodec"),
])
def test_missing_piece_raises_an_error_that_says_what_to_install(call, expected):
    r = run(call)
    assert r.returncode != 0
    assert expected in r.stderr, r.stderr


def test_auto_decoder_on_cpu_is_pyav_and_says_so(caplog):
    from dfdc_fast.io import resolve_decoder

    assert resolve_decoder("auto", "cpu") == "pyav"
    with pytest.raises(ValueError, match="allowed: auto, nvdec, dali, pyav"):
        resolve_decoder("decord", "cpu")


def test_auto_decoder_on_cuda_without_a_gpu_decoder_falls_back_loudly(caplog, monkeypatch):
    import dfdc_fast.io.api as api
    import dfdc_fast.io.dali as dali
    import dfdc_fast.io.nvdec as nvdec

    monkeypatch.setattr(nvdec, "nvdec_available", lambda: False)
    monkeypatch.setattr(nvdec, "nvdec_problem", lambda: "PyNvVideoCodec is not installed (pip install pynvvideocodec)")
    monkeypatch.setattr(dali, "dali_available", lambda: False)
    api._announced.clear()
    with caplog.at_level("INFO", logger="dfdc_fast.io"):
        assert api.resolve_decoder("auto", "cuda") == "pyav"
    assert "decoder=auto chose 'pyav'" in caplog.text and "pip install pynvvideocodec" in caplog.text


def test_auto_decoder_says_what_failed_when_pynvvideocodec_is_installed(caplog, monkeypatch):
    """Installed but failing for lack of a driver: the log says so instead of "install pynvvideocodec"."""
    import builtins

    import torch

    import dfdc_fast.io.api as api
    import dfdc_fast.io.dali as dali
    import dfdc_fast.io.nvdec as nvdec

    real_import = builtins.__import__

    def failing(name, *args, **kwargs):
        if name == "PyNvVideoCodec":
            raise RuntimeError("libnvidia-encode.so.1: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(builtins, "__import__", failing)
    monkeypatch.setattr(dali, "dali_available", lambda: False)
    api._announced.clear()
    with caplog.at_level("INFO", logger="dfdc_fast.io"):
        assert api.resolve_decoder("auto", "cuda") == "pyav"
    assert "installed but its import failed: libnvidia-encode" in caplog.text
    assert "pip install" not in caplog.text
    assert nvdec.nvdec_problem().startswith("PyNvVideoCodec is installed")


def test_nvdec_reader_refuses_a_cpu_device():
    from dfdc_fast.io.nvdec import NvdecReader

    with pytest.raises(ValueError, match="device must be cuda"):
        NvdecReader("cpu")
