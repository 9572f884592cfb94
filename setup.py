"""Build dfdc_fast and its native extension ``dfdc_fast._C``.

The CPU kernels are always built. The CUDA kernels are added when a CUDA device is
visible or ``FORCE_CUDA=1`` (CI sets it, so every ``.cu`` file compiles there with
nvcc even without a GPU). ``DFDC_FAST_NO_EXT=1`` registers the pure-Python package
only (used by ``scripts/setup.sh`` for the editable install, after it has built the
extension in place).

Environment: FORCE_CUDA, TORCH_CUDA_ARCH_LIST, MAX_JOBS, CUDA_HOME, NVCC_FLAGS, DEBUG.
"""
import glob
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")


def _pip_cuda_include_dirs():
    """Headers shipped in the pip ``nvidia-*`` wheels (cusparse.h, cublas_v2.h, ...).

    torch's CUDA headers include them, and a toolkit assembled from pip wheels (as on
    the CI machines) lacks them under CUDA_HOME.
    """
    try:
        import nvidia  # namespace package from the nvidia-* wheels
    except ImportError:
        return []
    dirs = []
    for base in nvidia.__path__:
        dirs += sorted(glob.glob(os.path.join(base, "*", "include")))
    return dirs


def _extensions():
    if os.environ.get("DFDC_FAST_NO_EXT") == "1":
        return [], {}
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    force_cuda = os.environ.get("FORCE_CUDA", "0") == "1"
    use_cuda = force_cuda or torch.cuda.is_available()
    if use_cuda and not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        # No GPU to detect the architecture from: build for Hopper (H100/H200), the
        # project's GPU target. Set TORCH_CUDA_ARCH_LIST for others (e.g. "6.0;8.0;9.0").
        os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
    if use_cuda and not os.environ.get("CUDA_HOME") and os.path.isdir("/usr/local/cuda"):
        os.environ["CUDA_HOME"] = "/usr/local/cuda"
    if use_cuda:
        # CUDA_HOME is read by torch at import time of cpp_extension; re-read it.
        import torch.utils.cpp_extension as cpp_ext

        cpp_ext.CUDA_HOME = os.environ.get("CUDA_HOME", cpp_ext.CUDA_HOME)
    debug = os.environ.get("DEBUG", "0") == "1"

    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp")) + glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    cuda_sources = sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
    cxx_flags = ["-O0", "-g"] if debug else ["-O3"]
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr"] + os.environ.get("NVCC_FLAGS", "").split()
    define_macros = []
    include_dirs = [os.path.join(ROOT, CSRC)]
    if use_cuda:
        define_macros.append(("WITH_CUDA", None))
        include_dirs += _pip_cuda_include_dirs()
        ext = CUDAExtension(
            "dfdc_fast._C",
            sources=sources + cuda_sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
        )
    else:
        ext = CppExtension(
            "dfdc_fast._C",
            sources=sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags},
        )
    print(
        f"dfdc_fast build: cuda={use_cuda} (FORCE_CUDA={int(force_cuda)}, "
        f"CUDA_HOME={os.environ.get('CUDA_HOME')}, TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')}) "
        f"sources={len(sources) + (len(cuda_sources) if use_cuda else 0)} torch={torch.__version__}",
        file=sys.stderr,
    )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()

setup(
    name="dfdc_fast",
    version="0.1.0",
    description="GPU-native video toolkit for deepfake detection (DFDC): decode, detect, track, crop, train, infer.",
    packages=find_packages(include=["dfdc_fast", "dfdc_fast.*"]),
    package_data={"dfdc_fast": ["assets/demo/*.mp4", "assets/demo/*.json", "assets/demo/*.md", "configs/*.yaml"]},
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "torchvision", "numpy", "av>=12", "tqdm", "pyyaml"],
    extras_require={
        "nvdec": ["pynvvideocodec>=2.0"],
        "dali": ["nvidia-dali-cuda130"],
        "opencv": ["opencv-python-headless"],
        # --executor ray (extract, infer on a cluster); pinned: the tests and the README's figures are of this one
        "ray": ["ray==2.60.0"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    entry_points={"console_scripts": [
        "dfdc-probe=dfdc_fast.probe:main",
        "dfdc-detect=dfdc_fast.detect.__main__:main",
        "dfdc-extract=dfdc_fast.extract:main",
        "dfdc-train=dfdc_fast.train.__main__:main",
        "dfdc-infer=dfdc_fast.infer.__main__:main",
    ]},
)
